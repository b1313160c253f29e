"""Payment declines are counted by reason, once per charge, on the service's /metrics."""

from __future__ import annotations

from typing import Any

from shopkit.testing import scraped

DECLINES = "shop_payment_declines_total"


async def test_declines_are_counted_by_reason_once_per_charge(api: Any) -> None:
    # Known reasons are exported at 0 before the first decline.
    card = await scraped(api.client, DECLINES, reason="card-declined")
    funds = await scraped(api.client, DECLINES, reason="insufficient-funds")
    assert card is not None
    assert funds is not None

    await api.charge(token="tok_visa")
    declined = api.charge_body(token="tok_chargeDeclined")
    first = await api.client.post("/internal/charges", json=declined)
    assert first.status_code == 201
    assert first.json()["status"] == "declined"
    # The same request again is a replay of the stored charge, not a second decline.
    again = await api.client.post("/internal/charges", json=declined)
    assert again.status_code == 200
    await api.charge(token="tok_chargeDeclinedInsufficientFunds")
    await api.charge(token="tok_chargeDeclinedInsufficientFunds")

    assert await scraped(api.client, DECLINES, reason="card-declined") == card + 1
    assert await scraped(api.client, DECLINES, reason="insufficient-funds") == funds + 2
