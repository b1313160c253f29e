"""Settings of the notification service (env prefix ``SWEETSLICE_NOTIFICATION_``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict
from shopkit.settings import ServiceSettings

DEFAULT_MAIL_FROM = "Sweet Slice <orders@sweetslice.local>"


class NotificationSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="SWEETSLICE_NOTIFICATION_", frozen=True, extra="ignore"
    )

    service_name: str = "notification"
    port: int = Field(default=8106, ge=1, le=65535)

    # "mailbox" writes .eml files under the service's data directory, so a fresh clone needs
    # no mail server; "smtp" hands messages to a real relay.
    mail_transport: Literal["mailbox", "smtp"] = "mailbox"
    mail_from: str = Field(default=DEFAULT_MAIL_FROM, min_length=3, max_length=320)
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=1025, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_timeout_seconds: float = Field(default=10.0, gt=0, le=120)

    # Deliveries of one event before JetStream gives up; the last failed send marks the
    # notification failed.
    max_deliveries: int = Field(default=10, ge=1, le=100)
    # Longer than a user lookup plus an SMTP timeout, so a slow send is not redelivered meanwhile.
    ack_wait_seconds: float = Field(default=30.0, gt=0, le=600)
