"""API keys: several may be valid at once (rotation); each has an id that is logged instead of it, and scopes.

`API_KEYS=app:<secret>:score,hr:<secret>:score+read,audit:<secret>:read+feedback`: a key reaches only
the routes of its scopes. `score` scores (`/invocations`, `/predict/by-id`); `read` reads the log,
decision records, model facts and cards, drift and challenger reports; `feedback` records outcomes.
A key written `id:secret`, without scopes, holds all three for this release, with a warning.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass

from serving.errors import ConfigurationError, Forbidden, Unauthenticated

logger = logging.getLogger(__name__)
SCOPES = ("score", "read", "feedback")


@dataclass(frozen=True)
class ApiKey:
    """One accepted key, the id that stands for it in logs, and what it may do."""

    key_id: str
    secret: bytes
    scopes: frozenset[str] = frozenset(SCOPES)
    scoped: bool = True  # False: written without scopes, every scope for now.


def _scopes(key_id: str, text: str) -> frozenset[str]:
    names = [name.strip() for name in text.split("+")]
    if unknown := [name for name in names if name not in SCOPES]:
        raise ConfigurationError(
            f"API_KEYS: key {key_id!r} names unknown scope(s) {', '.join(map(repr, unknown))}; "
            f"the scopes are {'+'.join(SCOPES)}"
        )
    return frozenset(names)


def parse_keys(entries: list[str]) -> list[ApiKey]:
    """`key_id:secret:scope+scope` entries (`key_id:secret` is every scope); the id is logged for the key."""
    keys = []
    for number, entry in enumerate(entries, start=1):
        key_id, sep, rest = entry.partition(":")
        if not sep or not key_id:
            # An id computed from the secret alone would let whoever reads the log confirm a guessed key.
            raise ConfigurationError(f"API_KEYS: entry {number} has no id; write it as key_id:secret:scopes")
        secret, scoped, scopes = rest.rpartition(":")
        key = (
            ApiKey(key_id, secret.encode(), _scopes(key_id, scopes))
            if scoped
            else ApiKey(key_id, rest.encode(), scoped=False)
        )
        if len(key.secret) < 16:
            raise ConfigurationError(f"API_KEYS: key {key_id!r} is shorter than 16 characters")
        keys.append(key)
    if len({key.key_id for key in keys}) != len(keys):
        raise ConfigurationError("API_KEYS: two keys share an id")
    for key in keys:
        if not key.scoped:
            logger.warning(
                "API_KEYS: key %r has no scopes and may do everything (score, read, feedback); write "
                "it as %s:<secret>:<scopes>, since keys without scopes stop working in the next release",
                key.key_id, key.key_id,
            )  # fmt: skip
    return keys


def identify(keys: list[ApiKey], presented: str | None) -> ApiKey | None:
    """The presented key, None when auth is off; `Unauthenticated` otherwise."""
    if not keys:
        return None
    candidate = (presented or "").encode()
    match = None
    for key in keys:  # Every key is compared, so timing does not tell which one came close.
        if hmac.compare_digest(candidate, key.secret):
            match = key
    if match is None:
        raise Unauthenticated()
    return match


def permit(key: ApiKey | None, scope: str, what: str) -> str | None:
    """The key's id if it holds `scope` (or auth is off); `Forbidden`, logged with the key's id, if not."""
    if key is None:
        return None
    if scope not in key.scopes:
        logger.warning("key %r refused %s: it lacks the %r scope", key.key_id, what, scope)
        raise Forbidden(key.key_id, scope)
    return key.key_id
