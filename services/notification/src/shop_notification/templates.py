"""What each notification says: short, friendly plain text built only from the event's data.

Nothing secret ever reaches an email: events carry no payment tokens, and the texts below use
only order references, item names and amounts.
"""

from __future__ import annotations

from dataclasses import dataclass

from shop_notification.schemas import (
    EventData,
    NotificationType,
    OrderCancelledData,
    OrderConfirmedData,
    PaymentDeclinedData,
)

SIGNATURE = "Warm wishes,\nThe Sweet Slice bakery team"
MAX_SUBJECT = 200

DECLINE_REASONS = {
    "card-declined": "your card was declined",
    "insufficient-funds": "the card did not have sufficient funds",
}


@dataclass(frozen=True)
class Content:
    subject: str
    body: str


def dollars(cents: int) -> str:
    """US dollars from minor units: 123456 -> "$1,234.56"."""
    return f"${cents // 100:,}.{cents % 100:02d}"


def order_ref(order_id: str) -> str:
    # The full id is in the body; a short reference keeps the subject readable.
    return "#" + order_id[:8]


def _plain(text: str) -> str:
    # Names come from the catalog via an event; keep each on one line whatever they contain.
    return " ".join(text.split())


def render(kind: NotificationType, data: EventData) -> Content:
    if kind == "order_confirmed":
        assert isinstance(data, OrderConfirmedData)
        return _order_confirmed(data)
    if kind == "order_cancelled":
        assert isinstance(data, OrderCancelledData)
        return _order_cancelled(data)
    assert isinstance(data, PaymentDeclinedData)
    return _payment_failed(data)


def _order_confirmed(data: OrderConfirmedData) -> Content:
    lines = [
        "Hello,",
        "",
        f"Thank you for your order! Your Sweet Slice order {data.order_id} is confirmed "
        "and our bakers are on it.",
        "",
    ]
    if data.items:
        lines.append("What you ordered:")
        lines.extend(f"  {item.quantity} x {_plain(item.name)}" for item in data.items)
        lines.append("")
    lines += [f"Total: {dollars(data.total.amount)}", "", SIGNATURE, ""]
    return Content(
        subject=f"Your Sweet Slice order {order_ref(data.order_id)} is confirmed",
        body="\n".join(lines),
    )


def _order_cancelled(data: OrderCancelledData) -> Content:
    lines = ["Hello,", "", f"Your Sweet Slice order {data.order_id} has been cancelled."]
    if data.refunded.amount > 0:
        lines.append(
            f"We have refunded {dollars(data.refunded.amount)} to the card you paid with; "
            "it can take a few days to show up."
        )
    lines += ["", "We hope to bake for you again soon.", "", SIGNATURE, ""]
    return Content(
        subject=f"Your Sweet Slice order {order_ref(data.order_id)} has been cancelled",
        body="\n".join(lines),
    )


def _payment_failed(data: PaymentDeclinedData) -> Content:
    reason = DECLINE_REASONS.get(data.decline_code or "", "the payment was not approved")
    lines = [
        "Hello,",
        "",
        f"We could not take the payment of {dollars(data.amount.amount)} for your Sweet Slice "
        f"order {data.order_id}: {reason}. You have not been charged.",
        "",
        "Your cart is still waiting for you: you can try again with another card.",
        "",
        SIGNATURE,
        "",
    ]
    return Content(
        subject=f"Payment for your Sweet Slice order {order_ref(data.order_id)} did not go through",
        body="\n".join(lines),
    )
