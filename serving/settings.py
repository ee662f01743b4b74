"""The serving process's settings: environment variables (prefix `SERVING_`) and the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from logstore.settings import LogStoreSettings


class ServingSettings(LogStoreSettings):
    """Everything `python -m serving` needs; command-line options win over the environment."""

    model_config = SettingsConfigDict(env_prefix="SERVING_", extra="forbid", populate_by_name=True)

    model: str = Field(min_length=1, description="registered model name")
    alias: str | None = Field(default=None, description="alias to follow (default: production)")
    stage: Literal["Staging", "Production"] | None = Field(default=None, description="stage to follow")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    poll_seconds: float = Field(default=10.0, gt=0, description="how often the registry is read")

    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        validation_alias=AliasChoices("SERVING_API_KEYS", "API_KEYS", "api_keys"),
        description="comma-separated keys, each `secret` or `key_id:secret`; empty = no auth",
    )
    max_body_bytes: int = Field(default=20 * 2**20, gt=0, description="larger request bodies get 413")
    backend_timeout_seconds: float = Field(default=60.0, gt=0, description="then 504")
    backend_start_seconds: float = Field(default=180.0, gt=0, description="time for a backend's /ping")
    backend_workers: int = Field(
        default=1, ge=1, description="uvicorn workers of `mlflow models serve`, each taking merged calls"
    )
    batching: bool = Field(
        default=True, description="merge JSON requests that wait for a busy backend into one call"
    )
    batch_max_rows: int = Field(default=512, ge=1, description="rows at most in one merged call")
    batch_max_wait_ms: float = Field(
        default=0.0, ge=0, le=1000, description="extra wait for more requests to merge; 0: none"
    )
    shadow: str | None = Field(
        default=None,
        min_length=1,
        description="alias of a challenger that scores every answered request again, after the answer "
        "(e.g. staging); its answers go to the log's shadow_predictions; none: off",
    )
    shadow_queue: int = Field(
        default=1000,
        ge=1,
        description="requests waiting to be shadowed at most; beyond, they are not (counted)",
    )
    # Each completed shadow call costs the proxy's own process about half a request's work: under a
    # saturating load 8 in flight kept 0.77 of the throughput (58% shadowed), 2 kept 0.96 (18%).
    shadow_workers: int = Field(
        default=2,
        ge=1,
        le=64,
        description="shadow calls in flight at once: under load, how much of the proxy shadowing may take",
    )
    shadow_nice: int = Field(
        default=19,
        ge=0,
        le=19,
        description="CPU niceness of the challenger's backend: at 19 it scores on what serving leaves idle",
    )
    drain_seconds: float = Field(default=60.0, ge=0, description="grace for a replaced backend's requests")
    spool_dir: Path = Field(default=Path(".serving-spool"), description="local write-ahead log of rows")
    spool_max_bytes: int = Field(default=512 * 2**20, gt=0, description="bound on the spool's size")
    spool_full: Literal["reject", "drop"] = Field(
        default="reject", description="when the spool is full: refuse predictions (503) or drop log rows"
    )
    flush_seconds: float = Field(default=0.5, gt=0, description="how often queued rows are written")
    log_requests: bool = Field(
        default=True, description="false: answer without logging anything (load tests, benchmarks)"
    )
    database_timeout_seconds: float = Field(
        default=10.0, gt=0, description="reads of the log (predictions, by-id) wait this long, then 503"
    )
    database_wait_seconds: float = Field(default=30.0, ge=0, description="wait for the database at start")

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    @model_validator(mode="after")
    def _one_target(self) -> ServingSettings:
        if self.alias and self.stage:
            raise ValueError("give either alias or stage, not both")
        if not self.alias and not self.stage:
            self.alias = "production"
        if self.shadow is not None and self.shadow == self.alias:
            raise ValueError(f"shadow: the challenger @{self.shadow} is the version served")
        return self

    @property
    def target(self) -> str:
        """What is followed, as written in a `models:/` URI: `@production` or `/Production`."""
        return f"/{self.stage}" if self.stage else f"@{self.alias}"
