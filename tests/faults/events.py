"""Checker item 6 of RELIABILITY.md: every published event was handled exactly once in effect.

Publishers' outboxes say which events were written and published; the notification service's
inbox says which events its consumers handled, its deliveries which notifications came of them,
and its mailbox which emails went out. After the drain these must agree: every published event
on a subscribed subject has one inbox row (handled, by the consumer of its stream), none was
handled that no publisher wrote, none went to the dead letters, and no event gave more than one
notification or more than one email."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import nats
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from tests.e2e.support import RunningPlatform

# Services with an outbox, and the notification consumer of each subject prefix
# (docs/internal-api.md, Events): notification subscribes to everything they publish.
PUBLISHERS = ("order", "payment")
CONSUMER_OF = {"order.": "notification-orders", "payment.": "notification-payments"}
NOTIFYING_SUBJECTS = frozenset({"order.confirmed", "order.cancelled", "payment.declined"})
DEAD_LETTER_STREAM = "DEADLETTER"


async def _get(internal: httpx.AsyncClient, url: str, **params: Any) -> Any:
    resp = await internal.get(url, params=params)
    assert resp.status_code == 200, f"{url}: {resp.status_code} {resp.text}"
    return resp.json()


async def audit_pages(internal: httpx.AsyncClient, url: str) -> tuple[dict[str, Any], list[Any]]:
    """Every item of a paged audit, and the counts of its first page."""
    first = await _get(internal, url)
    items = list(first["items"])
    cursor = first["next_cursor"]
    while cursor is not None:
        page = await _get(internal, url, cursor=cursor)
        items += page["items"]
        cursor = page["next_cursor"]
    return first, items


async def outbox_counts(platform: RunningPlatform, internal: httpx.AsyncClient) -> dict[str, Any]:
    """{service: {"written", "published", "unpublished"}} from each publisher's outbox audit."""
    counts = {}
    for service in PUBLISHERS:
        body = await _get(internal, platform.url(service) + "/internal/outbox/audit", limit=1)
        counts[service] = {k: body[k] for k in ("written", "published", "unpublished")}
    return counts


def mailbox(platform: RunningPlatform) -> Path:
    """Where the suite's notification service writes its emails (the mailbox transport)."""
    return platform.config.data_dir.resolve() / "notification" / "mailbox"


def emails(platform: RunningPlatform) -> Counter[str]:
    """Emails in the mailbox per notification id (a second copy is ``<id>.2.eml``)."""
    directory = mailbox(platform)
    if not directory.exists():
        return Counter()
    return Counter(p.name.split(".", 1)[0] for p in directory.glob("*.eml"))


@contextlib.asynccontextmanager
async def jetstream(platform: RunningPlatform) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(platform.config.nats_url, connect_timeout=5, max_reconnect_attempts=2)
    try:
        yield nc.jetstream(timeout=10)
    finally:
        await nc.close()


async def stream_messages(platform: RunningPlatform, stream: str) -> int:
    async with jetstream(platform) as js:
        try:
            info = await js.stream_info(stream)
        except NotFoundError:
            return 0
    count: int = info.state.messages
    return count


async def check_events(
    platform: RunningPlatform,
    internal: httpx.AsyncClient,
    *,
    settle_seconds: float = 60,
    record: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, int]:
    """Waits until every outbox is drained and notification has settled every published event,
    then asserts checker item 6 and returns its figures (also handed to ``record`` before
    anything is asserted, so a failing run still reports them); assertion errors name each
    violation."""
    deadline = time.monotonic() + settle_seconds
    notification = platform.url("notification")
    while True:
        published: dict[str, dict[str, Any]] = {}
        unpublished = 0
        for service in PUBLISHERS:
            counts, rows = await audit_pages(
                internal, platform.url(service) + "/internal/outbox/audit"
            )
            unpublished += counts["unpublished"]
            published.update({r["id"]: r for r in rows if r["published_at"] is not None})
        inbox_counts, inbox = await audit_pages(internal, notification + "/internal/inbox/audit")
        done = {r["event_id"] for r in inbox if r["status"] != "received"}
        waiting = [e for e, r in published.items() if _consumer(r["subject"]) and e not in done]
        if (not unpublished and not waiting) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)

    violations: list[str] = []
    if unpublished:
        violations.append(f"{unpublished} outbox rows still unpublished after {settle_seconds}s")
    violations += [f"published event {e} never handled" for e in waiting[:20]]

    rows_per_event = Counter(r["event_id"] for r in inbox)
    violations += [f"event {e} has {n} inbox rows" for e, n in rows_per_event.items() if n > 1]
    for row in inbox:
        event = published.get(row["event_id"])
        if event is None:
            violations.append(f"inbox row for an event no outbox published: {row}")
        elif row["consumer"] != _consumer(event["subject"]):
            violations.append(f"event {row['event_id']} handled by {row['consumer']}: {event}")
        if row["status"] == "dead":
            violations.append(f"event {row['event_id']} went to the dead letters: {row}")

    deliveries = (await _get(internal, notification + "/internal/deliveries"))["items"]
    notifications = Counter(d["event_id"] for d in deliveries)
    violations += [f"event {e} gave {n} notifications" for e, n in notifications.items() if n > 1]
    handled = {r["event_id"] for r in inbox if r["status"] == "handled"}
    by_event = {d["event_id"]: d for d in deliveries}
    for event_id in handled:
        subject = published.get(event_id, {}).get("subject")
        delivery = by_event.get(event_id)
        if delivery is not None and delivery["status"] == "queued":
            violations.append(f"event {event_id} handled, its notification still queued")
        if delivery is None and subject in NOTIFYING_SUBJECTS:
            # Only data no notification can be made of leaves none (logged by the service).
            violations.append(f"{subject} event {event_id} handled without a notification")
    violations += [
        f"notification of event {e} has no handled inbox row" for e in by_event if e not in handled
    ]

    sent = sum(d["status"] == "sent" for d in deliveries)
    mail = emails(platform)
    twice = {n: c for n, c in mail.items() if c > 1}
    violations += [f"notification {n} emailed {c} times" for n, c in twice.items()]
    if sum(mail.values()) != sent:
        violations.append(f"{sum(mail.values())} emails in the mailbox for {sent} sent")
    dead_letters = await stream_messages(platform, DEAD_LETTER_STREAM)
    if dead_letters:
        violations.append(f"{dead_letters} messages in the dead-letter stream")

    figures = {
        "events_published": len(published),
        "events_handled": len(handled),
        "inbox_rows": len(inbox),
        "deliveries": int(inbox_counts["deliveries"]),
        "duplicates_suppressed": int(inbox_counts["duplicates"]),
        "dead_lettered": int(inbox_counts["dead"]) + dead_letters,
        "notifications": len(deliveries),
        "emails": sum(mail.values()),
        "duplicate_effects": sum(c - 1 for c in twice.values())
        + sum(n - 1 for n in notifications.values() if n > 1),
        "event_violations": len(violations),
    }
    if record is not None:
        record(figures)
    assert not violations, "\n".join(violations[:20])
    return figures


def _consumer(subject: str) -> str | None:
    return next((c for prefix, c in CONSUMER_OF.items() if subject.startswith(prefix)), None)
