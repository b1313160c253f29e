"""NATS JetStream: publishing through a transactional outbox, and durable consumers.

Publishers never talk to the broker inside a request. They add an outbox row in the same
transaction as the state change (:func:`enqueue`); :class:`OutboxRelay` publishes rows with the
JetStream message id set to the row id, so a republish after a crash is dropped by the server's
duplicate window, and marks them published. While the broker is down rows simply wait.

Consumers (:func:`consume`) record every event they handled in an inbox (:func:`inbox_table`),
so an event delivered again (a redelivery, or a republish past the duplicate window) is
acknowledged without running its effect twice. A message that is not an event, or whose handler
failed on every delivery it is allowed, goes to the dead-letter stream (``dead.<durable>``) with
headers saying where it came from and why, and is then terminated.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal

import nats
from fastapi import APIRouter, Depends, Query, Request
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, PubAck, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError
from prometheus_client import Counter, Gauge
from pydantic import BaseModel
from sqlalchemy import (
    CheckConstraint,
    Column,
    CursorResult,
    Index,
    Integer,
    MetaData,
    Result,
    String,
    Table,
    Text,
    case,
    event,
    func,
    select,
    tuple_,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from shopkit import tracing
from shopkit.auth import Internal
from shopkit.db import Database, UtcDateTime, utcnow
from shopkit.schemas import decode_cursor, encode_cursor, invalid_cursor

log = logging.getLogger("shopkit.messaging")

DEAD_LETTER_STREAM = "DEADLETTER"
DEAD_LETTER_PREFIX = "dead."
# Every stream of the platform, declared once so any service can create them on first connect.
STREAMS: dict[str, list[str]] = {
    "ORDERS": ["order.>"],
    "PAYMENTS": ["payment.>"],
    DEAD_LETTER_STREAM: [DEAD_LETTER_PREFIX + ">"],
}
DUPLICATE_WINDOW_SECONDS = 300.0
# Event ids are outbox row ids (UUIDs); anything longer cannot be an inbox key.
MAX_EVENT_ID = 100
MAX_HEADER_TEXT = 200

EVENTS = Counter(
    "shop_events",
    "Event deliveries a consumer settled, by outcome (handled, duplicate, retried, dead-lettered).",
    ["consumer", "outcome"],
)
DEAD_LETTERED = Counter(
    "shop_events_dead_lettered",
    "Messages a consumer moved to the dead-letter stream.",
    ["consumer"],
)
OUTBOX_PUBLISHED = Counter(
    "shop_outbox_published",
    "Outbox rows published, by what the server made of them (new, or duplicate: a republish "
    "it dropped because the message id was seen before).",
    ["service", "outcome"],
)
OUTBOX_OUTCOMES = ("new", "duplicate")
OUTBOX_LAG = Gauge(
    "shop_outbox_lag_seconds",
    "Age of the oldest outbox row not yet published, as the relay saw it on its last pass "
    "(0 when nothing waits). It grows while the broker is unreachable.",
    ["service"],
    # Every worker's relay reads the same table; the latest reading is the truth, and a worker
    # that died does not pin its last value.
    multiprocess_mode="mostrecent",
)
EVENT_OUTCOMES = ("handled", "duplicate", "busy", "retried", "dead-lettered")
DEAD_LETTER_DEPTH = Gauge(
    "shop_dead_letter_messages",
    "Messages waiting in the dead-letter stream, by the consumer that set them aside, as last "
    "read from the broker. They stay until someone looks at them and replays or purges them.",
    ["consumer"],
    # Every worker reads the same stream; the latest reading is the truth.
    multiprocess_mode="mostrecent",
)
DEAD_LETTER_SAMPLE_SECONDS = 15.0


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    occurred_at: str
    data: dict[str, Any]
    # Which delivery of the message this is, and whether it is the last one the consumer will
    # get: a handler that cannot finish on its last delivery must settle the event itself.
    delivery: int = 1
    last_delivery: bool = False

    @classmethod
    def parse(cls, raw: bytes, *, delivery: int = 1, last_delivery: bool = False) -> Event:
        doc = json.loads(raw)
        if not isinstance(doc, dict) or not isinstance(doc.get("data"), dict):
            raise ValueError("event envelope must be an object with a data object")
        event_id = doc["id"]
        if not isinstance(event_id, str) or not 0 < len(event_id) <= MAX_EVENT_ID:
            raise ValueError(f"event id must be a string of 1..{MAX_EVENT_ID} characters")
        return cls(
            id=event_id,
            type=str(doc["type"]),
            occurred_at=str(doc["occurred_at"]),
            data=doc["data"],
            delivery=delivery,
            last_delivery=last_delivery,
        )


class Broker:
    """One NATS connection per process, connected in the background and reconnected forever."""

    def __init__(self, url: str, *, name: str) -> None:
        self.url = url
        self.name = name
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    async def start(self) -> None:
        self._task = asyncio.create_task(self._connect_forever(), name=f"{self.name}-nats-connect")

    async def _connect_forever(self) -> None:
        delay = 0.2
        while True:
            try:
                nc = await nats.connect(
                    self.url,
                    name=self.name,
                    connect_timeout=2,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=1,
                    error_cb=self._on_error,
                )
                js = nc.jetstream(timeout=5)
                await ensure_streams(js)
            except Exception as exc:
                log.warning("broker not reachable yet: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self._nc, self._js = nc, js
            self._connected.set()
            return

    async def _on_error(self, exc: Exception) -> None:
        log.warning("broker connection error: %s", exc)

    async def jetstream(self) -> JetStreamContext:
        await self._connected.wait()
        assert self._js is not None
        return self._js

    async def publish(
        self,
        subject: str,
        payload: bytes,
        *,
        msg_id: str,
        headers: dict[str, str] | None = None,
    ) -> PubAck:
        if not self.connected or self._js is None:
            raise ConnectionError("broker is not connected")
        return await self._js.publish(
            subject, payload, headers={**(headers or {}), "Nats-Msg-Id": msg_id}
        )

    async def check(self) -> None:
        if not self.connected:
            raise ConnectionError("not connected to the broker")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.drain()


async def ensure_streams(js: JetStreamContext) -> None:
    for name, subjects in STREAMS.items():
        config = StreamConfig(
            name=name, subjects=subjects, duplicate_window=DUPLICATE_WINDOW_SECONDS
        )
        try:
            await js.stream_info(name)
        except NotFoundError:
            await js.add_stream(config)


def _rowcount(result: Result[Any]) -> int:
    # An UPDATE's result is a CursorResult; the session's signature only promises a Result.
    count: int = result.rowcount if isinstance(result, CursorResult) else 0
    return count


# ---------------------------------------------------------------------------------- outbox


def outbox_table(metadata: MetaData) -> Table:
    """The outbox of one service, part of that service's own metadata and migrations."""
    return Table(
        "outbox",
        metadata,
        Column("id", String(36), primary_key=True),
        Column("subject", String(200), nullable=False),
        Column("payload", Text, nullable=False),
        Column("created_at", UtcDateTime(), nullable=False),
        Column("published_at", UtcDateTime(), nullable=True),
        # W3C trace context of the request that wrote the row (JSON headers), or NULL: the
        # relay publishes later, outside that request, and sends it on as message headers.
        Column("trace_context", Text, nullable=True),
        Index("ix_outbox_unpublished", "published_at", "created_at"),
    )


async def enqueue(session: AsyncSession, table: Table, subject: str, data: dict[str, Any]) -> str:
    """Add an event to the caller's transaction: it is published only if that commits."""
    event_id = str(uuid.uuid4())
    now = utcnow()
    envelope = {"id": event_id, "type": subject, "occurred_at": now.isoformat(), "data": data}
    await session.execute(
        table.insert().values(
            id=event_id,
            subject=subject,
            payload=json.dumps(envelope),
            created_at=now,
            trace_context=tracing.producer_context(subject, event_id),
        )
    )
    session.info["outbox"] = True
    return event_id


class OutboxRelay:
    def __init__(
        self,
        db: Database,
        table: Table,
        broker: Broker,
        *,
        batch: int = 100,
        idle_seconds: float = 0.25,
    ) -> None:
        self._db = db
        self._table = table
        self._broker = broker
        self._batch = batch
        self._idle = idle_seconds
        self._wake = asyncio.Event()
        event.listen(db.sync_session_class, "after_commit", self._after_commit)
        for outcome in OUTBOX_OUTCOMES:
            OUTBOX_PUBLISHED.labels(broker.name, outcome)
        self._lag = OUTBOX_LAG.labels(broker.name)
        self._lag.set(0)

    def _after_commit(self, session: Session) -> None:
        if session.info.pop("outbox", False):
            self._wake.set()

    def wake(self) -> None:
        """Called after a commit that added rows, so events go out without waiting for a poll."""
        self._wake.set()

    async def publish_pending(self) -> int:
        t = self._table
        async with self._db.session() as session:
            rows = (
                await session.execute(
                    select(t.c.id, t.c.subject, t.c.payload, t.c.created_at, t.c.trace_context)
                    .where(t.c.published_at.is_(None))
                    .order_by(t.c.created_at)
                    .limit(self._batch)
                )
            ).all()
        oldest = (utcnow() - rows[0].created_at).total_seconds() if rows else 0.0
        self._lag.set(max(oldest, 0.0))
        published: list[str] = []
        try:
            for row in rows:
                ack = await self._broker.publish(
                    row.subject,
                    row.payload.encode(),
                    msg_id=row.id,
                    headers=tracing.captured_headers(row.trace_context),
                )
                published.append(row.id)
                outcome = "duplicate" if ack.duplicate else "new"
                OUTBOX_PUBLISHED.labels(self._broker.name, outcome).inc()
        finally:
            if published:
                async with self._db.session() as session:
                    await session.execute(
                        update(t).where(t.c.id.in_(published)).values(published_at=utcnow())
                    )
        if len(published) < self._batch:
            # Everything that waited went out; rows added meanwhile are younger than this pass.
            self._lag.set(0)
        return len(published)

    async def run(self) -> None:
        delay = self._idle
        while True:
            try:
                sent = await self.publish_pending()
                delay = self._idle
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox relay: %s", exc)
                sent = 0
                delay = min(max(delay * 2, 0.5), 5.0)
            if sent == self._batch:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)


# ----------------------------------------------------------------------------------- inbox

InboxStatus = Literal["received", "handled", "dead"]


def inbox_table(metadata: MetaData) -> Table:
    """The inbox of one consuming service: one row per (event, consumer), whatever the number
    of deliveries. 'received' while a delivery is being handled (or failed and will come
    again), 'handled' once the handler returned, 'dead' once the event went to the dead-letter
    stream. ``duplicates`` counts deliveries that found the event handled already."""
    return Table(
        "inbox",
        metadata,
        Column("event_id", String(MAX_EVENT_ID), primary_key=True),
        Column("consumer", String(100), primary_key=True),
        Column("subject", String(200), nullable=False),
        Column("status", String(16), nullable=False),
        Column("deliveries", Integer, nullable=False),
        Column("duplicates", Integer, nullable=False),
        Column("first_delivery_at", UtcDateTime(), nullable=False),
        Column("last_delivery_at", UtcDateTime(), nullable=False),
        Column("handled_at", UtcDateTime(), nullable=True),
        CheckConstraint("status IN ('received', 'handled', 'dead')", name="ck_inbox_status"),
    )


class Inbox:
    """The consumer side's record of events, kept in the consuming service's own database."""

    def __init__(self, db: Database, table: Table) -> None:
        self.db = db
        self.table = table

    async def receive(self, event_id: str, consumer: str, subject: str) -> bool:
        """Count a delivery; False when the event was handled before (nothing left to do).

        A 'dead' event delivered again (replayed from the dead-letter stream, or republished)
        gets another chance: it is 'received' again."""
        t = self.table
        now = utcnow()
        key = (t.c.event_id == event_id) & (t.c.consumer == consumer)
        bump = (
            update(t)
            .where(key)
            .values(
                deliveries=t.c.deliveries + 1,
                last_delivery_at=now,
                duplicates=case(
                    (t.c.status == "handled", t.c.duplicates + 1), else_=t.c.duplicates
                ),
                status=case((t.c.status == "dead", "received"), else_=t.c.status),
            )
        )
        async with self.db.session() as session:
            if _rowcount(await session.execute(bump)) == 0:
                try:
                    async with session.begin_nested():
                        await session.execute(
                            t.insert().values(
                                event_id=event_id,
                                consumer=consumer,
                                subject=subject[:200],
                                status="received",
                                deliveries=1,
                                duplicates=0,
                                first_delivery_at=now,
                                last_delivery_at=now,
                            )
                        )
                    return True
                except IntegrityError:
                    # Another delivery of the event inserted it first (replicas on PostgreSQL).
                    await session.execute(bump)
            # SQL evaluates every SET against the row as it was, so a row that was 'handled'
            # still reads 'handled' after the bump above.
            status = await session.scalar(select(t.c.status).where(key))
        return status != "handled"

    async def settle(self, event_id: str, consumer: str, status: InboxStatus) -> bool:
        """Record how a delivery ended; False when the event was handled already by another
        delivery (counted as a duplicate then)."""
        t = self.table
        key = (t.c.event_id == event_id) & (t.c.consumer == consumer)
        async with self.db.session() as session:
            result = await session.execute(
                update(t)
                .where(key, t.c.status != "handled")
                .values(status=status, handled_at=utcnow() if status == "handled" else None)
            )
            if _rowcount(result) == 1:
                return True
            if status == "handled":
                await session.execute(update(t).where(key).values(duplicates=t.c.duplicates + 1))
        return False


# ------------------------------------------------------------------------------- consumers

Handler = Callable[[Event], Awaitable[None]]


async def consume(
    broker: Broker,
    *,
    stream: str,
    durable: str,
    subject: str,
    handler: Handler,
    max_deliver: int = 10,
    ack_wait: float = 30.0,
    inbox: Inbox | None = None,
    concurrency: int = 1,
) -> None:
    """Run a durable pull consumer forever: ack after the handler succeeds, nak with backoff when
    it fails, and dead-letter messages that can never succeed (not an event, or out of
    deliveries). With an ``inbox``, events it says were handled are acked without the handler.

    Up to ``concurrency`` messages are handled at once. A message is fetched only when a slot is
    free, so its ack timer runs while it is handled, not while it waits its turn; a handler
    slower than ``ack_wait`` sees its message redelivered meanwhile (the inbox and the
    handler's own idempotency make that harmless)."""
    delivery = _Delivery(
        broker=broker,
        stream=stream,
        durable=durable,
        handler=handler,
        max_deliver=max_deliver,
        inbox=inbox,
    )
    config = ConsumerConfig(
        name=durable,
        durable_name=durable,
        filter_subject=subject,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ack_wait,
        max_deliver=max_deliver,
    )
    for outcome in EVENT_OUTCOMES:
        EVENTS.labels(durable, outcome)
    DEAD_LETTERED.labels(durable)
    in_flight: set[asyncio.Task[None]] = set()
    while True:
        sub: JetStreamContext.PullSubscription | None = None
        try:
            js = await broker.jetstream()
            try:
                # Create or update: a changed ack wait or delivery budget applies at restart.
                await js.add_consumer(stream, config)
            except BadRequestError as exc:
                log.warning("consumer %s kept its existing configuration: %s", durable, exc)
            sub = await js.pull_subscribe_bind(durable=durable, stream=stream)
            while True:
                _stop_if_cancelled()
                if len(in_flight) >= concurrency:
                    await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                    continue
                try:
                    msgs = await sub.fetch(batch=concurrency - len(in_flight), timeout=1)
                except NatsTimeoutError:
                    continue
                for msg in msgs:
                    task = asyncio.create_task(delivery.handle(msg), name=f"{durable}-delivery")
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
        except asyncio.CancelledError:
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)
            raise
        except Exception as exc:
            _stop_if_cancelled()
            log.warning("consumer %s: %s", durable, _describe(exc))
            await asyncio.sleep(1.0)
        finally:
            # Left subscribed, replies still queued for it make Broker.close()'s drain wait its
            # full timeout (30 s) at every shutdown; unacked messages are redelivered anyway.
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()


async def watch_dead_letters(
    broker: Broker, durables: Iterable[str], *, interval: float = DEAD_LETTER_SAMPLE_SECONDS
) -> None:
    """Keep ``shop_dead_letter_messages`` current for these consumers: the counter of messages
    dead-lettered says something went wrong; this depth says how much still waits for a person."""
    subjects = {DEAD_LETTER_PREFIX + durable: durable for durable in durables}
    for durable in subjects.values():
        DEAD_LETTER_DEPTH.labels(durable).set(0)
    while True:
        try:
            js = await broker.jetstream()
            info = await js.stream_info(
                DEAD_LETTER_STREAM, subjects_filter=DEAD_LETTER_PREFIX + ">"
            )
            counts = info.state.subjects or {}
            for subject, durable in subjects.items():
                DEAD_LETTER_DEPTH.labels(durable).set(counts.get(subject, 0))
        except Exception as exc:
            # The broker away: the last reading stands until it is back.
            log.debug("dead-letter depth not read: %s", _describe(exc))
        await asyncio.sleep(interval)


def _stop_if_cancelled() -> None:
    # On Python 3.11 a cancellation can be swallowed when it races a reply (asyncio.wait_for,
    # nats-py's next_msg); the request stays recorded, and honouring it here keeps shutdown from
    # waiting on this loop forever.
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _header_text(text: str) -> str:
    # Header values are one line of printable text: an error message must not inject headers.
    flat = " ".join(text.split())
    return flat if len(flat) <= MAX_HEADER_TEXT else flat[: MAX_HEADER_TEXT - 3] + "..."


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


@dataclass(frozen=True, kw_only=True)
class _Delivery:
    """Settles one message: inbox, handler, then ack, nak or dead letter."""

    broker: Broker
    stream: str
    durable: str
    handler: Handler
    max_deliver: int
    inbox: Inbox | None
    # Events being handled by this consumer right now, each with the moment its handling ends.
    handling: dict[str, asyncio.Event] = field(default_factory=dict)

    async def handle(self, msg: Msg) -> None:
        if not tracing.enabled():
            await self._settle(msg)
            return
        # The span's parent is the producer's context the message carries (see enqueue).
        delivery = msg.metadata.num_delivered or 1
        with tracing.consumer_span(msg.subject, msg.headers, self.durable, delivery):
            await self._settle(msg)

    async def _settle(self, msg: Msg) -> None:
        try:
            await self._handle(msg)
        except Exception as exc:
            # Only acks and naks are left to fail here (the broker went away): the message
            # comes back after its ack wait.
            log.warning("consumer %s could not settle a message: %s", self.durable, exc)

    async def _handle(self, msg: Msg) -> None:
        attempt = msg.metadata.num_delivered or 1
        last = attempt >= self.max_deliver
        try:
            event = Event.parse(msg.data, delivery=attempt, last_delivery=last)
        except (ValueError, KeyError, TypeError) as exc:
            tracing.failed(exc)
            log.error("message %s on %s is not an event: %s", _seq(msg), msg.subject, exc)
            await self._dead_letter(msg, attempt, f"not an event: {exc}", None)
            return
        tracing.message_id(event.id)
        try:
            fresh = self.inbox is None or await self.inbox.receive(
                event.id, self.durable, msg.subject
            )
        except Exception as exc:
            await self._failed(msg, event, exc)
            return
        if not fresh:
            EVENTS.labels(self.durable, "duplicate").inc()
            await msg.ack()
            return
        while (running := self.handling.get(event.id)) is not None:
            # Delivered again while this process still handles it (a handler slower than the ack
            # wait, or a second copy of the event): it comes back later, when the inbox can tell
            # whether it is done (a redelivery of the same message is settled by the first
            # delivery's ack). On its last delivery nothing would come back: it waits instead,
            # then runs the handler, which finds its effect done if the first one did it.
            if not last:
                EVENTS.labels(self.durable, "busy").inc()
                await msg.nak(delay=_backoff(attempt))
                return
            await running.wait()
        done = self.handling[event.id] = asyncio.Event()
        try:
            await self._run(msg, event)
        finally:
            if self.handling.get(event.id) is done:
                del self.handling[event.id]
            done.set()

    async def _run(self, msg: Msg, event: Event) -> None:
        try:
            await self.handler(event)
            first = True
            if self.inbox is not None:
                first = await self.inbox.settle(event.id, self.durable, "handled")
        except Exception as exc:
            await self._failed(msg, event, exc)
            return
        EVENTS.labels(self.durable, "handled" if first else "duplicate").inc()
        await msg.ack()

    async def _failed(self, msg: Msg, event: Event, exc: Exception) -> None:
        tracing.failed(exc)
        if event.last_delivery:
            log.error(
                "giving up on event %s after %d deliveries: %s", event.id, event.delivery, exc
            )
            await self._dead_letter(msg, event.delivery, _describe(exc), event)
        else:
            log.warning("event %s failed (delivery %d): %s", event.id, event.delivery, exc)
            EVENTS.labels(self.durable, "retried").inc()
            await msg.nak(delay=_backoff(event.delivery))

    async def _dead_letter(self, msg: Msg, attempt: int, error: str, event: Event | None) -> None:
        """Publish the original payload to ``dead.<durable>``, then terminate the message. If the
        dead-letter stream cannot take it, a message with deliveries left comes back later to
        try again; on its last delivery it is terminated anyway (it stays in its own stream)."""
        headers = {
            "Dead-Letter-Consumer": self.durable,
            "Dead-Letter-Stream": self.stream,
            "Dead-Letter-Subject": msg.subject,
            "Dead-Letter-Sequence": str(_seq(msg)),
            "Dead-Letter-Deliveries": str(attempt),
            "Dead-Letter-Error": _header_text(error),
        }
        if event is not None:
            headers["Dead-Letter-Event-Id"] = event.id
        # A dead letter stays in the trace of the event it could not handle.
        headers = {**tracing.trace_headers(msg.headers), **headers}
        try:
            await self.broker.publish(
                DEAD_LETTER_PREFIX + self.durable,
                msg.data,
                # One dead letter per message of the stream, however often this is retried.
                msg_id=f"{self.durable}:{self.stream}:{_seq(msg)}",
                headers=headers,
            )
        except Exception as exc:
            if attempt < self.max_deliver:
                log.warning("dead-lettering message %s failed, later: %s", _seq(msg), exc)
                await msg.nak(delay=_backoff(attempt))
                return
            log.error("message %s is dropped, not dead-lettered: %s", _seq(msg), exc)
        else:
            DEAD_LETTERED.labels(self.durable).inc()
            EVENTS.labels(self.durable, "dead-lettered").inc()
        if event is not None and self.inbox is not None:
            try:
                await self.inbox.settle(event.id, self.durable, "dead")
            except Exception as exc:
                log.error("event %s: the inbox does not say it is dead: %s", event.id, exc)
        await msg.term()


def _backoff(attempt: int) -> float:
    return min(2.0**attempt * 0.1, 10.0)


def _seq(msg: Msg) -> int:
    sequence: int = msg.metadata.sequence.stream
    return sequence


# ---------------------------------------------------------------------------------- audits

AUDIT_PAGE = 1000
AuditLimit = Annotated[int, Query(ge=1, le=AUDIT_PAGE, description="page size")]
AuditCursor = Annotated[
    str | None, Query(max_length=512, description="next_cursor of the previous page")
]


class OutboxAuditItem(BaseModel):
    id: str
    subject: str
    created_at: datetime
    published_at: datetime | None


class OutboxAudit(BaseModel):
    written: int
    published: int
    unpublished: int
    items: list[OutboxAuditItem]
    next_cursor: str | None


class InboxAuditItem(BaseModel):
    event_id: str
    consumer: str
    subject: str
    status: InboxStatus
    deliveries: int
    duplicates: int
    first_delivery_at: datetime
    last_delivery_at: datetime
    handled_at: datetime | None


class InboxAudit(BaseModel):
    received: int
    handled: int
    dead: int
    deliveries: int
    duplicates: int
    items: list[InboxAuditItem]
    next_cursor: str | None


async def _read_session(request: Request) -> AsyncIterator[AsyncSession]:
    db: Database = request.app.state.db
    async with db.session(read_only=True) as session:
        yield session


ReadSession = Annotated[AsyncSession, Depends(_read_session)]


def _cursor_fields(cursor: str, keys: set[str]) -> dict[str, str]:
    position = decode_cursor(cursor, keys)
    if not all(isinstance(position[k], str) for k in keys):
        raise invalid_cursor()
    return {k: str(position[k]) for k in keys}


def outbox_audit_router(table: Table) -> APIRouter:
    """``GET /internal/outbox/audit``: how many events the service wrote and published, and
    the rows themselves in pages (by id) for checkers to match against consumers' inboxes."""
    router = APIRouter(prefix="/internal", tags=["internal"], dependencies=[Internal])
    t = table

    @router.get("/outbox/audit", response_model=OutboxAudit)
    async def outbox_audit(
        session: ReadSession, limit: AuditLimit = AUDIT_PAGE, cursor: AuditCursor = None
    ) -> OutboxAudit:
        """Counts of every row, and one page of rows."""
        written, published = (
            await session.execute(select(func.count(), func.count(t.c.published_at)))
        ).one()
        query = select(t.c.id, t.c.subject, t.c.created_at, t.c.published_at)
        if cursor is not None:
            query = query.where(t.c.id > _cursor_fields(cursor, {"id"})["id"])
        rows = (await session.execute(query.order_by(t.c.id).limit(limit + 1))).all()
        items = [OutboxAuditItem.model_validate(r, from_attributes=True) for r in rows[:limit]]
        more = len(rows) > limit
        return OutboxAudit(
            written=written,
            published=published,
            unpublished=written - published,
            items=items,
            next_cursor=encode_cursor({"id": items[-1].id}) if more else None,
        )

    return router


def inbox_audit_router(table: Table) -> APIRouter:
    """``GET /internal/inbox/audit``: what the service's consumers made of every event."""
    router = APIRouter(prefix="/internal", tags=["internal"], dependencies=[Internal])
    t = table

    @router.get("/inbox/audit", response_model=InboxAudit)
    async def inbox_audit(
        session: ReadSession, limit: AuditLimit = AUDIT_PAGE, cursor: AuditCursor = None
    ) -> InboxAudit:
        """Counts by status, delivery totals, and one page of rows."""
        by_status: dict[str, int] = dict(
            (await session.execute(select(t.c.status, func.count()).group_by(t.c.status))).all()
        )
        deliveries, duplicates = (
            await session.execute(
                select(
                    func.coalesce(func.sum(t.c.deliveries), 0),
                    func.coalesce(func.sum(t.c.duplicates), 0),
                )
            )
        ).one()
        query = select(t)
        if cursor is not None:
            after = _cursor_fields(cursor, {"event_id", "consumer"})
            query = query.where(
                tuple_(t.c.event_id, t.c.consumer) > tuple_(after["event_id"], after["consumer"])
            )
        rows = (
            await session.execute(query.order_by(t.c.event_id, t.c.consumer).limit(limit + 1))
        ).all()
        items = [InboxAuditItem.model_validate(r, from_attributes=True) for r in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = items[-1]
            next_cursor = encode_cursor({"event_id": last.event_id, "consumer": last.consumer})
        return InboxAudit(
            received=by_status.get("received", 0),
            handled=by_status.get("handled", 0),
            dead=by_status.get("dead", 0),
            deliveries=int(deliveries),
            duplicates=int(duplicates),
            items=items,
            next_cursor=next_cursor,
        )

    return router
