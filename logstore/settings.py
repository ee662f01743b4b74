"""What every reader and writer of the log store needs: its URL and the key of its pseudonyms."""

from __future__ import annotations

import re
from datetime import timedelta

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///serving.db"
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def period(text: str) -> timedelta:
    """`365d`, `12h`, `30m` or `45s`; ValueError for anything else, zero included."""
    found = re.fullmatch(r"\s*(\d+)\s*([smhd])\s*", text)
    if found is None or int(found.group(1)) == 0:
        raise ValueError(f"not a duration such as 365d, 12h or 30m: {text!r}")
    return timedelta(**{UNITS[found.group(2)]: int(found.group(1))})


class LogStoreSettings(BaseSettings):
    """Where the prediction log is and the key of its pseudonyms: what every reader of the log needs."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        validation_alias=AliasChoices("SERVING_DATABASE_URL", "DATABASE_URL", "database_url"),
        description="log store (SQLAlchemy URL); PostgreSQL in production",
    )
    entity_id_hmac_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "SERVING_ENTITY_ID_HMAC_KEY", "ENTITY_ID_HMAC_KEY", "entity_id_hmac_key"
        ),
        description="when set, logged entity ids are HMAC-SHA256 pseudonyms",
    )

    retention: timedelta | None = Field(
        default=None,
        validation_alias=AliasChoices("LOG_RETENTION", "retention"),
        description="how long `python -m logstore retain` keeps a request (365d, 12h); unset: kept",
    )

    @field_validator("retention", mode="before")
    @classmethod
    def _period(cls, value: object) -> object:
        return period(value) if isinstance(value, str) else value

    @property
    def hmac_key(self) -> bytes | None:
        """The key of entity-id pseudonyms, or None when ids are logged as given."""
        return self.entity_id_hmac_key.get_secret_value().encode() if self.entity_id_hmac_key else None
