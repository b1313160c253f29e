"""RELIABILITY.md's R4, R5 and R6: the broker killed, the relay crashing between publishing and
marking, and a consumer slower than its ack wait. Each ends with the checker of items 1-5
(check_history) and item 6 (check_events): every published event handled once in effect."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.support import RunningPlatform, metric
from tests.faults.checker import check_history
from tests.faults.events import (
    NOTIFYING_SUBJECTS,
    audit_pages,
    check_events,
    emails,
    jetstream,
    outbox_counts,
)
from tests.faults.harness import (
    Figures,
    figures_key,
    kill9,
    new_shop,
    restart,
    size,
)


def _written(counts: dict[str, Any]) -> int:
    return sum(c["written"] for c in counts.values())


def _published(counts: dict[str, Any]) -> int:
    return sum(c["published"] for c in counts.values())


async def test_r4_broker_killed_checkout_goes_on_and_the_outbox_catches_up(
    platform: RunningPlatform,
    client: httpx.AsyncClient,
    internal: httpx.AsyncClient,
    admin_headers: dict[str, str],
    figures: Figures,
) -> None:
    key = figures_key("R4")
    began = time.monotonic()
    history, shop, customers = await new_shop(
        client, admin_headers, size(4, 8), label="Events", prices=(450, 80)
    )
    history.phase = "before"
    await shop.shoppers(customers, rounds=1)
    assert history.counts(phase="before")["ok"] == len(customers)
    before = await outbox_counts(platform, internal)

    outage_seconds = float(size(5, 10))
    outage_over = False
    waiting: list[int] = []

    async def outage() -> float:
        nonlocal outage_over
        try:
            await kill9(platform, "nats")
            down = time.monotonic()
            await asyncio.sleep(outage_seconds)
            # The rows written meanwhile wait in the outboxes.
            waiting.append(
                sum(c["unpublished"] for c in (await outbox_counts(platform, internal)).values())
            )
            await restart(platform, "nats")
            return time.monotonic() - down
        finally:
            outage_over = True

    history.phase = "outage"
    down_for, _ = await asyncio.gather(
        outage(), shop.shoppers(customers, until=lambda: outage_over, pause=0.3)
    )
    restarted = time.monotonic()

    async def drained() -> float:
        while True:
            counts = await outbox_counts(platform, internal)
            if all(c["unpublished"] == 0 for c in counts.values()):
                return time.monotonic() - restarted
            if time.monotonic() - restarted > 60:
                raise AssertionError(f"outboxes not drained a minute after the restart: {counts}")
            await asyncio.sleep(0.25)

    drain_s = await drained()
    history.phase = "after"
    await shop.shoppers(customers, rounds=1)
    after = await outbox_counts(platform, internal)

    during = history.counts(phase="outage")
    figures.record(
        key,
        {
            "broker_down_s": round(down_for, 1),
            "checkouts_during_outage": during,
            "rows_waiting_at_restart": waiting[0] if waiting else None,
            "drained_after_restart_s": round(drain_s, 2),
            "rows_written_in_test": _written(after) - _written(before),
        },
    )
    # Checkout does not need the broker: every one made while it was down went through.
    assert during["ok"] >= len(customers) and during["failed"] == during["unknown"] == 0, during
    assert waiting and waiting[0] > 0, "no event waited for the broker; the fault proved nothing"
    assert history.counts(phase="after")["ok"] == len(customers)
    assert not history.server_errors(), history.server_errors()

    # Items 1-6, the events (item 6) included.
    events = await check_history(
        platform, internal, history, record=lambda f: figures.record(key, f)
    )
    final = await outbox_counts(platform, internal)
    figures.record(
        key,
        {
            "rows_written": _written(final),
            "rows_published": _published(final),
            "by_service": {s: f"{c['published']}/{c['written']}" for s, c in final.items()},
            "test_seconds": round(time.monotonic() - began, 1),
        },
    )
    assert all(c["published"] == c["written"] for c in final.values()), final
    assert events["events_handled"] >= _written(final) - sum(
        c["unpublished"] for c in final.values()
    )


def _order_database(platform: RunningPlatform) -> Path:
    return platform.config.data_dir.resolve() / "order" / "db.sqlite3"


def _forget_published(database: Path, count: int) -> dict[str, dict[str, Any]]:
    """What a relay killed after publishing and before marking leaves: the newest published rows
    of the outbox without their published_at. Done while the order service is down; returns the
    rows' event envelopes by id."""
    with contextlib.closing(sqlite3.connect(database, timeout=10)) as conn, conn:
        rows = conn.execute(
            "SELECT id, payload FROM outbox WHERE published_at IS NOT NULL "
            "ORDER BY created_at DESC LIMIT ?",
            (count,),
        ).fetchall()
        conn.executemany(
            "UPDATE outbox SET published_at = NULL WHERE id = ?", [(r[0],) for r in rows]
        )
    return {event_id: json.loads(payload) for event_id, payload in rows}


async def test_r5_relay_crash_between_publish_and_mark_gives_no_duplicate_effect(
    platform: RunningPlatform,
    client: httpx.AsyncClient,
    internal: httpx.AsyncClient,
    admin_headers: dict[str, str],
    figures: Figures,
) -> None:
    key = figures_key("R5")
    began = time.monotonic()
    history, shop, customers = await new_shop(
        client, admin_headers, size(4, 8), label="Events", prices=(450, 80)
    )
    kills = size(2, 10)
    chaos_over = False
    pids: list[tuple[int, int]] = []

    async def chaos() -> None:
        # Killed while its relay publishes confirmations: some rows may be published and not
        # marked; the restarted relay publishes them again.
        nonlocal chaos_over
        try:
            for _ in range(kills):
                await asyncio.sleep(4.0)
                old = await kill9(platform, "order")
                await asyncio.sleep(0.5)
                pids.append((old, await restart(platform, "order")))
            await asyncio.sleep(0.5)
        finally:
            chaos_over = True

    history.phase = "kill-loop"
    await asyncio.gather(
        chaos(), shop.shoppers(customers, until=lambda: chaos_over, pause=1.0, max_rounds=100)
    )
    history.phase = "after"
    await shop.shoppers(customers, rounds=1)
    # Every event of the kill loop settled before the deterministic part counts anything.
    await check_events(platform, internal)
    stream_before = await _stream_messages(platform, "ORDERS")
    written_before = (await outbox_counts(platform, internal))["order"]["written"]

    # The crash exactly between publishing and marking, made deterministic: the order service
    # dies, its newest published rows lose their mark, and it comes back.
    forgotten = size(10, 50)
    await kill9(platform, "order")
    notification = platform.url("notification")
    _, inbox_before = await audit_pages(internal, notification + "/internal/inbox/audit")
    duplicates_before = {r["event_id"]: int(r["duplicates"]) for r in inbox_before}
    mail_before = sum(emails(platform).values())
    envelopes = _forget_published(_order_database(platform), forgotten)
    ids = list(envelopes)
    await restart(platform, "order")
    duplicates_metric = {"service": "order", "outcome": "duplicate"}

    async def republished() -> float:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if (await outbox_counts(platform, internal))["order"]["unpublished"] == 0:
                break
            await asyncio.sleep(0.25)
        # Summed over the instances: whichever relay got to the rows first published them.
        found = [
            await metric(
                internal, platform.url(name), "shop_outbox_published_total", duplicates_metric
            )
            for name in platform.config.instances("order")
        ]
        return sum(found)

    dropped_by_server = await republished()

    # A republish the server cannot recognize (past its duplicate window): the same events
    # under other message ids reach the consumers, whose inbox must absorb them.
    again = size(5, 20)
    copies = ids[:again]
    async with jetstream(platform) as js:
        for event_id in copies:
            ack = await js.publish(
                envelopes[event_id]["type"],
                json.dumps(envelopes[event_id]).encode(),
                headers={"Nats-Msg-Id": f"past-the-window-{uuid.uuid4()}"},
            )
            assert not ack.duplicate

    async def copies_seen() -> int:
        """How many of the copied events' inbox rows counted one more duplicate delivery
        (other redeliveries may happen meanwhile: the platform's total is not the test's)."""
        deadline = time.monotonic() + 30
        while True:
            _, rows = await audit_pages(internal, notification + "/internal/inbox/audit")
            now = {r["event_id"]: int(r["duplicates"]) for r in rows}
            seen = sum(now.get(e, 0) > duplicates_before.get(e, 0) for e in copies)
            if seen >= len(copies) or time.monotonic() > deadline:
                return seen
            await asyncio.sleep(0.25)

    suppressed = await copies_seen()
    written_after = (await outbox_counts(platform, internal))["order"]["written"]
    stream_after = await _stream_messages(platform, "ORDERS")

    figures.record(
        key,
        {
            "order_kills": len(pids),
            "kill_loop_checkouts": history.counts(phase="kill-loop"),
            "rows_republished": len(ids),
            "republished_dropped_by_server": int(dropped_by_server),
            "stream_growth_beyond_new_rows": stream_after
            - stream_before
            - (written_after - written_before)
            - len(copies),
            "copies_past_the_window": len(copies),
            "copies_suppressed_by_inbox": suppressed,
            "emails_from_copies": sum(emails(platform).values()) - mail_before,
        },
    )
    assert len(pids) == kills and all(old != new for old, new in pids), pids
    assert len(ids) == forgotten, ids
    # Nats-Msg-Id = outbox id: every republished row was dropped by the server's window.
    assert dropped_by_server == len(ids), (dropped_by_server, len(ids))
    assert stream_after - stream_before == (written_after - written_before) + len(copies)
    assert suppressed == len(copies), (suppressed, len(copies))
    assert sum(emails(platform).values()) == mail_before
    assert not history.server_errors(), history.server_errors()

    # Items 1-6, the events (item 6) included.
    events = await check_history(
        platform, internal, history, record=lambda f: figures.record(key, f)
    )
    figures.record(key, {"test_seconds": round(time.monotonic() - began, 1)})
    assert events["duplicate_effects"] == 0


async def _stream_messages(platform: RunningPlatform, stream: str) -> int:
    async with jetstream(platform) as js:
        info = await js.stream_info(stream)
    count: int = info.state.messages
    return count


@contextlib.asynccontextmanager
async def _notification_env(platform: RunningPlatform, env: dict[str, str]) -> AsyncIterator[None]:
    """The notification service restarted with ``env`` added, then restarted as it was."""
    child = platform.platform.children["notification"]
    saved = dict(child.env)
    child.env.update(env)
    try:
        await asyncio.to_thread(platform.stop_service, "notification")
        await asyncio.to_thread(platform.start_service, "notification")
        yield
    finally:
        child.env.clear()
        child.env.update(saved)
        await asyncio.to_thread(platform.stop_service, "notification")
        await asyncio.to_thread(platform.start_service, "notification")


HANDLER_DELAY_SECONDS = 2.5
ACK_WAIT_SECONDS = 1.0


async def test_r6_handler_slower_than_ack_wait_sends_one_email_per_event(
    platform: RunningPlatform,
    client: httpx.AsyncClient,
    internal: httpx.AsyncClient,
    admin_headers: dict[str, str],
    figures: Figures,
) -> None:
    key = figures_key("R6")
    began = time.monotonic()
    history, shop, customers = await new_shop(
        client, admin_headers, 2, label="Events", prices=(450, 80)
    )
    notification = platform.url("notification")
    # Every event published so far is settled, so what follows is this test's alone.
    await check_events(platform, internal)
    _, seen = await audit_pages(internal, platform.url("order") + "/internal/outbox/audit")
    known = {r["id"] for r in seen}
    mail_before = emails(platform)
    slow = {
        "SWEETSLICE_NOTIFICATION_ACK_WAIT_SECONDS": str(ACK_WAIT_SECONDS),
        "SWEETSLICE_NOTIFICATION_FAULT_HANDLER_DELAY_SECONDS": str(HANDLER_DELAY_SECONDS),
        # Room to fetch redeliveries while the slow sends hold their slots.
        "SWEETSLICE_NOTIFICATION_CONSUMER_CONCURRENCY": "16",
    }
    checkouts = size(6, 50)
    async with _notification_env(platform, slow):
        history.phase = "slow-consumer"
        await shop.shoppers(customers, rounds=checkouts // len(customers), pause=0.5)
        await check_events(platform, internal, settle_seconds=90)
        labels = {"consumer": "notification-orders"}
        busy = await metric(
            internal, notification, "shop_events_total", {**labels, "outcome": "busy"}
        )
        duplicate = await metric(
            internal, notification, "shop_events_total", {**labels, "outcome": "duplicate"}
        )
        _, inbox = await audit_pages(internal, notification + "/internal/inbox/audit")

    _, rows = await audit_pages(internal, platform.url("order") + "/internal/outbox/audit")
    mine = [r for r in rows if r["id"] not in known and r["subject"] in NOTIFYING_SUBJECTS]
    mine_ids = {r["id"] for r in mine}
    deliveries = sum(r["deliveries"] for r in inbox if r["event_id"] in mine_ids)
    mail_after = emails(platform)
    new_mail = {
        n: c - mail_before.get(n, 0) for n, c in mail_after.items() if c != mail_before.get(n, 0)
    }
    figures.record(
        key,
        {
            "handler_delay_s": HANDLER_DELAY_SECONDS,
            "ack_wait_s": ACK_WAIT_SECONDS,
            "slow_phase_checkouts": history.counts(phase="slow-consumer"),
            "unique_events": len(mine),
            "emails_sent": sum(new_mail.values()),
            "inbox_deliveries": deliveries,
            "redeliveries_while_running": int(busy),
            "redeliveries_after_handled": int(duplicate),
        },
    )
    assert history.counts(phase="slow-consumer")["ok"] == checkouts
    assert len(mine) == checkouts, "every confirmed checkout publishes one order.confirmed"
    # JetStream redelivered events still being handled: the fault happened.
    assert busy + duplicate > 0 and deliveries > len(mine), (busy, duplicate, deliveries)
    assert sum(new_mail.values()) == len(mine) and all(c == 1 for c in new_mail.values())
    assert not history.server_errors(), history.server_errors()

    await check_history(platform, internal, history, record=lambda f: figures.record(key, f))
    await check_events(platform, internal, record=lambda f: figures.record(key, f))
    figures.record(key, {"test_seconds": round(time.monotonic() - began, 1)})
