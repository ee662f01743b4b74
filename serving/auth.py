"""API keys: several may be valid at once (rotation); each has an id that is logged instead of it."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from serving.errors import ConfigurationError, Unauthenticated


@dataclass(frozen=True)
class ApiKey:
    """One accepted key and the id that stands for it in logs."""

    key_id: str
    secret: bytes


def parse_keys(entries: list[str]) -> list[ApiKey]:
    """`key_id:secret` entries; the id is logged in place of the key."""
    keys = []
    for number, entry in enumerate(entries, start=1):
        key_id, sep, secret = entry.partition(":")
        if not sep or not key_id:
            # An id computed from the secret alone would let whoever reads the log confirm a guessed key.
            raise ConfigurationError(f"API_KEYS: entry {number} has no id; write it as key_id:secret")
        if len(secret) < 16:
            raise ConfigurationError(f"API_KEYS: key {key_id!r} is shorter than 16 characters")
        keys.append(ApiKey(key_id, secret.encode()))
    if len({key.key_id for key in keys}) != len(keys):
        raise ConfigurationError("API_KEYS: two keys share an id")
    return keys


def identify(keys: list[ApiKey], presented: str | None) -> str | None:
    """The id of the presented key, None when auth is off; `Unauthenticated` otherwise."""
    if not keys:
        return None
    candidate = (presented or "").encode()
    match = None
    for key in keys:  # Every key is compared, so timing does not tell which one came close.
        if hmac.compare_digest(candidate, key.secret):
            match = key.key_id
    if match is None:
        raise Unauthenticated()
    return match
