"""Settings base shared by every service.

Each service subclasses :class:`ServiceSettings` with its own ``env_prefix``
(``SWEETSLICE_<NAME>_``).
Secrets ship with development defaults so ``make up`` works on a fresh clone; anywhere else
those defaults are refused, because a shared well-known secret is no secret.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
)

from shopkit import clock
from shopkit.resilience import ResiliencePolicy

DEV_INTERNAL_TOKEN = "sweetslice-dev-internal-token"  # noqa: S105 - refused outside development
# A folder of files, one per setting, named like its environment variable and holding its value
# (Kubernetes mounts Secrets this way). Secrets in files stay out of the process environment,
# which child processes inherit and crash reports and /proc/<pid>/environ expose.
SECRETS_DIR_ENV = "SWEETSLICE_SECRETS_DIR"
DiscoverySource = Literal["static", "dns", "consul"]


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True, env_nested_delimiter="__")

    environment: Literal["development", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    data_dir: Path = Path(".run")
    database_url: str = ""
    database_pool_size: int = Field(default=10, ge=1)
    sqlite_synchronous: Literal["OFF", "NORMAL", "FULL"] = "NORMAL"
    # How long a write waits for a lock another transaction holds before the request is
    # answered 503 database-unavailable (SQLite busy timeout; PostgreSQL lock_timeout).
    database_lock_timeout_seconds: float = Field(default=5.0, gt=0, le=600)
    # At start, how long to keep retrying a database that refuses connections before giving up
    # (on Kubernetes, PostgreSQL may come up after the services).
    startup_database_wait_seconds: float = Field(default=60.0, ge=0, le=600)
    nats_url: str = "nats://127.0.0.1:4222"
    user_url: str = "http://127.0.0.1:8101"
    internal_token: SecretStr = SecretStr(DEV_INTERNAL_TOKEN)
    jwt_issuer: str = "sweetslice-user"
    jwt_audience: str = "sweetslice"
    # Clock skew tolerated on a token's iat, nbf and exp: more than the 5 minutes RELIABILITY.md
    # (R17) says a service's clock may be off, so a fast or slow clock is not a logout.
    jwt_leeway_seconds: int = Field(default=360, ge=0, le=600)
    http_timeout_seconds: float = Field(default=5.0, gt=0)
    # Where peers are found (shopkit.discovery): the <PEER>_URL addresses as they are (static),
    # their host names resolved again and again (dns: Kubernetes DNS), or Consul's passing
    # instances, this one registering itself there (consul).
    discovery: DiscoverySource = "static"
    dns_refresh_seconds: float = Field(default=5.0, gt=0, le=3600)
    consul_http_addr: str = "http://127.0.0.1:8500"
    consul_token: SecretStr = SecretStr("")
    # How long Consul may hold a blocking query open when nothing changes.
    consul_wait_seconds: float = Field(default=30.0, gt=0, le=600)
    consul_check_interval_seconds: float = Field(default=10.0, gt=0, le=3600)
    consul_check_timeout_seconds: float = Field(default=2.0, gt=0, le=600)
    # An instance critical this long leaves the registry by itself (Consul's minimum is 1 m).
    consul_deregister_after_seconds: float = Field(default=60.0, gt=0, le=86400)
    # Registered in Consul as this instance's address: the pod IP on Kubernetes. Empty: the
    # listening host, or, listening on every address, what the host name resolves to.
    advertise_address: str = ""
    # Empty: <service>-<host name>-<port>, unique per pod and per local replica.
    instance_id: str = ""
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # Breakers, bulkheads and retries for calls to peers, e.g. <PREFIX>RESILIENCE__RETRIES=1.
    resilience: ResiliencePolicy = ResiliencePolicy()
    log_level: str = "INFO"
    log_json: bool = True
    # Prometheus metrics: off, requests are not measured and /metrics answers 404.
    metrics_enabled: bool = True
    # uvicorn worker processes sharing the port. Above 1 they share one Prometheus
    # multiprocess directory so /metrics counts every worker's requests (shopkit.server).
    workers: int = Field(default=1, ge=1, le=64)

    # FAULT INJECTION, for tests only: shifts this service's wall clock (stored timestamps, token
    # iat/exp, reservation expiry) by this many seconds, to show that bounded skew between
    # services is tolerated (RELIABILITY.md R17). Refused in production.
    fault_clock_offset_seconds: float = Field(default=0.0, ge=-86400, le=86400)

    # Subclasses name their service; it picks the default SQLite file and labels logs and metrics.
    service_name: str = "service"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources = [init_settings, env_settings, dotenv_settings]
        secrets_dir = os.environ.get(SECRETS_DIR_ENV, "").strip()
        if secrets_dir:
            if not Path(secrets_dir).is_dir():
                # Named but missing is a broken mount, not "no secrets": fail at start.
                raise ValueError(f"{SECRETS_DIR_ENV}={secrets_dir} is not a directory")
            # After the environment: a variable set by hand still wins over a mounted file.
            sources.append(SecretsSettingsSource(settings_cls, secrets_dir=secrets_dir))
        return tuple(sources)

    @model_validator(mode="after")
    def _refuse_unsafe_defaults(self) -> Self:
        if self.environment != "development" and self.fault_clock_offset_seconds:
            raise ValueError(
                "fault_clock_offset_seconds is a fault-injection switch for tests; "
                f"it must be 0 when environment={self.environment}"
            )
        if self.environment != "development":
            unsafe = self.unsafe_defaults()
            if unsafe:
                raise ValueError(
                    "development defaults are not allowed when environment="
                    f"{self.environment}: set {', '.join(sorted(unsafe))}"
                )
        return self

    def model_post_init(self, context: Any, /) -> None:
        # A service loads its settings once per process before anything reads the clock, so
        # this is where the fault switch takes effect (and where a default of 0 resets it).
        # Production refuses the switch (above); it never shifts the clock even for a moment.
        super().model_post_init(context)
        development = self.environment == "development"
        clock.set_offset(self.fault_clock_offset_seconds if development else 0.0)

    def unsafe_defaults(self) -> list[str]:
        """Names of settings still holding a development-only value; subclasses extend it."""
        unsafe = []
        if self.internal_token.get_secret_value() == DEV_INTERNAL_TOKEN:
            unsafe.append("internal_token")
        if not self.database_url:
            unsafe.append("database_url")
        return unsafe

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / self.service_name / 'db.sqlite3'}"

    @property
    def service_data_dir(self) -> Path:
        return self.data_dir / self.service_name
