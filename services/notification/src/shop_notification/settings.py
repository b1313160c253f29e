"""Settings of the notification service (env prefix ``SWEETSLICE_NOTIFICATION_``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator
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

    # One budget, two counters. It is JetStream's max_deliver for each event message, and the
    # cap on the row's send attempts. Deliveries are spent by every failure (user service down,
    # database busy, a send), attempts only by sends, so attempts never outrun deliveries for
    # one message; the cap still matters when one event is published twice (a publisher's
    # republish past the duplicate window), whose messages each get max_deliver deliveries but
    # share the row. Whatever stops the last delivery of a message from sending marks the row
    # failed (events.NotificationHandler), so no row waits 'queued' for a delivery that never comes.
    max_deliveries: int = Field(default=10, ge=1, le=100)
    # Longer than a user lookup plus an SMTP timeout, so a slow send is not redelivered meanwhile.
    ack_wait_seconds: float = Field(default=30.0, gt=0, le=600)
    # How long a send's claim on its notification keeps other deliveries (and replicas) from
    # sending it. Past this the sender is presumed dead and another delivery takes over, so it
    # must outlast any live send: the SMTP timeout bounds each step of one.
    claim_timeout_seconds: float = Field(default=60.0, gt=0, le=3600)
    # Events each consumer handles at once. Above 1 a consumer keeps fetching while a slow send
    # runs, so a redelivery can meet the delivery it repeats: the inbox and the send claim keep
    # that to one email.
    consumer_concurrency: int = Field(default=4, ge=1, le=64)
    # Fault switch for the fault suite (default off): each send waits this long once claimed,
    # a relay slower than the ack wait, so JetStream redelivers events still being sent. Keep it
    # below claim_timeout_seconds, or the redelivery takes the claim over and sends again.
    fault_handler_delay_seconds: float = Field(default=0.0, ge=0, le=600)

    @model_validator(mode="after")
    def _claims_outlast_sends(self) -> NotificationSettings:
        if self.claim_timeout_seconds <= self.smtp_timeout_seconds:
            raise ValueError("claim_timeout_seconds must be longer than smtp_timeout_seconds")
        if self.fault_handler_delay_seconds >= self.claim_timeout_seconds:
            raise ValueError("fault_handler_delay_seconds must be shorter than the claim timeout")
        return self
