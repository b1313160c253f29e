"""Errors of the notification service.

The public API has no failure of its own beyond the kit's (401, invalid cursor 422); what can go
wrong here happens while handling events, where an exception means "deliver this event again".
"""

from __future__ import annotations


class DeliveryDeferred(Exception):
    """The notification is recorded but not sent yet; JetStream redelivers the event later."""

    def __init__(self, event_id: str, reason: str) -> None:
        super().__init__(f"notification for event {event_id} deferred: {reason}")
        self.event_id = event_id
        self.reason = reason
