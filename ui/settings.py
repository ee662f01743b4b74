"""The app's settings, from the environment (prefix `UI_`)."""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class UiSettings(BaseSettings):
    """Where the proxy is and the key to use."""

    model_config = SettingsConfigDict(env_prefix="UI_", extra="ignore", populate_by_name=True)

    proxy_url: str = Field(default="http://127.0.0.1:8000", description="the scoring proxy")
    api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("UI_API_KEY", "API_KEY", "api_key"),
        description="sent as X-API-Key",
    )
    timeout_seconds: float = Field(default=30.0, gt=0, description="per request to the proxy")
