"""The mailbox transport (the local default) and what the messages say."""

from __future__ import annotations

import uuid
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from shop_notification.app import create_app
from shop_notification.mail import MailboxTransport, MailError, SmtpTransport, build_message
from shop_notification.schemas import OrderCancelledData, PaymentDeclinedData
from shop_notification.settings import NotificationSettings
from shop_notification.templates import dollars, render
from shopkit.testing import eventually

WAIT = 30.0


async def test_the_mailbox_transport_writes_a_parsable_eml(
    make_settings: Any, bus: Any, serving: Any, users: Any, smtp: Any
) -> None:
    settings = make_settings(mail_transport="mailbox")
    assert NotificationSettings().mail_transport == "mailbox"
    mailbox = settings.service_data_dir / "mailbox"
    customer = users.add("eml@example.com")
    order_id = str(uuid.uuid4())
    app = create_app(settings)
    async with serving(app):
        await bus.publish(
            "order.confirmed", bus.confirmed(customer, order_id=order_id, amount=123456)
        )

        async def one_file() -> list[Path]:
            return sorted(mailbox.glob("*.eml")) if mailbox.exists() else []

        files = await eventually(one_file, timeout=WAIT)
    assert len(files) == 1
    with files[0].open("rb") as fh:
        message = BytesParser(policy=policy.default).parse(fh)
    assert message["To"] == "eml@example.com"
    assert message["From"] == "Sweet Slice <orders@sweetslice.local>"
    assert message["Subject"] == f"Your Sweet Slice order #{order_id[:8]} is confirmed"
    assert message["Message-ID"] == f"<{files[0].stem}@sweetslice.local>"
    assert message["Date"]
    assert message.get_content_type() == "text/plain"
    body = message.get_content()
    assert "Total: $1,234.56" in body
    assert order_id in body
    # Written aside and renamed: no temporary file is left behind.
    assert [p.name for p in mailbox.iterdir()] == [files[0].name]
    assert smtp.received == []


async def test_mailbox_write_failure_is_a_mail_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the mailbox directory should be")
    transport = MailboxTransport(blocker / "mailbox")
    message = build_message(
        sender="Sweet Slice <orders@sweetslice.local>",
        recipient="a@example.com",
        subject="hello",
        body="hi",
        message_id="m1",
    )
    with pytest.raises(MailError):
        await transport.send(message)


async def test_smtp_refusal_is_a_mail_error(smtp: Any) -> None:
    await smtp.stop()
    transport = SmtpTransport(
        host="127.0.0.1", port=smtp.port, username=None, password=None, starttls=False, timeout=2
    )
    message = build_message(
        sender="Sweet Slice <orders@sweetslice.local>",
        recipient="a@example.com",
        subject="hello",
        body="hi",
        message_id="m2",
    )
    with pytest.raises(MailError):
        await transport.send(message)
    await smtp.start()
    await transport.send(message)
    assert [r.recipients for r in smtp.received] == [["a@example.com"]]
    assert smtp.received[0].message["Message-ID"] == "<m2@sweetslice.local>"


def test_dollars() -> None:
    assert dollars(0) == "$0.00"
    assert dollars(5) == "$0.05"
    assert dollars(1250) == "$12.50"
    assert dollars(123456789) == "$1,234,567.89"


def test_texts_say_what_happened_and_nothing_more() -> None:
    order_id = "0c1f2e3d-aaaa-bbbb-cccc-000000000000"
    cancelled = render(
        "order_cancelled",
        OrderCancelledData.model_validate(
            {"order_id": order_id, "customer_id": "c1", "refunded": {"amount": 2500}}
        ),
    )
    assert cancelled.subject == "Your Sweet Slice order #0c1f2e3d has been cancelled"
    assert "refunded $25.00" in cancelled.body
    declined = render(
        "payment_failed",
        PaymentDeclinedData.model_validate(
            {
                "order_id": order_id,
                "customer_id": "c1",
                "charge_id": "ch_secretish",
                "decline_code": "insufficient-funds",
                "amount": {"amount": 700},
                "payment_token": "tok_visa",
            }
        ),
    )
    assert "sufficient funds" in declined.body
    assert "$7.00" in declined.body
    for text in (declined.subject, declined.body):
        assert "tok_" not in text
        assert "ch_secretish" not in text
    assert "\n" not in declined.subject


def test_production_refuses_the_development_defaults() -> None:
    with pytest.raises(ValueError, match="development defaults"):
        NotificationSettings(environment="production")
    settings = NotificationSettings(
        environment="production",
        internal_token="a-real-secret",
        database_url="postgresql://notification@db/notification",
    )
    assert settings.port == 8106
    assert settings.mail_from == "Sweet Slice <orders@sweetslice.local>"
