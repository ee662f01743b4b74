"""Settings of the monitoring commands: the log store and the pseudonym key, from the environment."""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class MonitoringSettings(BaseSettings):
    """Where the prediction log is; the same variables the proxy reads."""

    model_config = SettingsConfigDict(env_prefix="MONITORING_", extra="ignore", populate_by_name=True)

    database_url: str = Field(
        default="sqlite:///serving.db",
        validation_alias=AliasChoices("MONITORING_DATABASE_URL", "DATABASE_URL", "database_url"),
        description="the proxy's log store (SQLAlchemy URL)",
    )
    entity_id_hmac_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "MONITORING_ENTITY_ID_HMAC_KEY", "ENTITY_ID_HMAC_KEY", "entity_id_hmac_key"
        ),
        description="the proxy's pseudonym key, to find outcomes by entity id",
    )

    @property
    def hmac_key(self) -> bytes | None:
        """The pseudonym key as bytes, or None."""
        return self.entity_id_hmac_key.get_secret_value().encode() if self.entity_id_hmac_key else None
