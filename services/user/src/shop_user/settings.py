"""Settings of the user service (env prefix ``SWEETSLICE_USER_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict
from shopkit.settings import ServiceSettings

from shop_user.emails import normalize_email

PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 128


class UserSettings(ServiceSettings):
    # validate_by_name lets tests pass admin_email=... although the environment names are global.
    model_config = SettingsConfigDict(
        env_prefix="SWEETSLICE_USER_", frozen=True, extra="ignore", validate_by_name=True
    )

    service_name: str = "user"
    port: int = Field(default=8101, ge=1, le=65535)

    # The Ed25519 private key (PKCS#8 PEM) that signs access tokens: a file or the PEM itself.
    signing_key_path: Path | None = None
    signing_key: SecretStr | None = None
    access_token_ttl_seconds: int = Field(default=3600, ge=60, le=86400)

    # argon2id; the defaults are OWASP's minimum recommendation (t=2, m=19 MiB, p=1).
    argon2_time_cost: int = Field(default=2, ge=1, le=20)
    argon2_memory_cost_kib: int = Field(default=19456, ge=8, le=1048576)
    argon2_parallelism: int = Field(default=1, ge=1, le=16)
    # Each hash in flight holds memory_cost_kib of RAM; bound them so a login burst cannot
    # exhaust memory or starve the thread pool that the rest of the service shares.
    argon2_max_concurrency: int = Field(default=4, ge=1, le=64)

    # Global names (no service prefix): the platform documents them this way in API.md.
    admin_email: str | None = Field(default=None, validation_alias="SWEETSLICE_ADMIN_EMAIL")
    admin_password: SecretStr | None = Field(
        default=None, validation_alias="SWEETSLICE_ADMIN_PASSWORD"
    )

    @field_validator("admin_email")
    @classmethod
    def _valid_admin_email(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return normalize_email(value)

    @field_validator("admin_password")
    @classmethod
    def _valid_admin_password(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        length = len(value.get_secret_value())
        if not PASSWORD_MIN_LENGTH <= length <= PASSWORD_MAX_LENGTH:
            raise ValueError(
                f"must be {PASSWORD_MIN_LENGTH}..{PASSWORD_MAX_LENGTH} characters long"
            )
        return value

    @model_validator(mode="after")
    def _one_signing_key_source(self) -> Self:
        if self.signing_key is not None and self.signing_key_path is not None:
            raise ValueError("set signing_key or signing_key_path, not both")
        return self

    def unsafe_defaults(self) -> list[str]:
        unsafe = super().unsafe_defaults()
        # The development key is generated on local disk: replicas would each mint their own
        # and reject one another's tokens, and a lost volume would log everyone out.
        if self.signing_key is None and self.signing_key_path is None:
            unsafe.append("signing_key")
        return unsafe

    @property
    def development_key_path(self) -> Path:
        return self.service_data_dir / "jwt-ed25519.pem"

    @property
    def admin_credentials(self) -> tuple[str, str] | None:
        if self.admin_email is None or self.admin_password is None:
            return None
        return self.admin_email, self.admin_password.get_secret_value()
