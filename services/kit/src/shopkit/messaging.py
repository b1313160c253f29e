"""NATS JetStream: publishing through a transactional outbox, and durable consumers.

Publishers never talk to the broker inside a request. They add an outbox row in the same
transaction as the state change (:func:`enqueue`); :class:`OutboxRelay` publishes rows with the
JetStream message id set to the row id, so a republish after a crash is dropped by the server's
duplicate window, and marks them published. While the broker is down rows simply wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, StreamConfig
from nats.js.errors import NotFoundError
from sqlalchemy import Column, Index, MetaData, String, Table, Text, event, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from shopkit.db import Database, UtcDateTime, utcnow

log = logging.getLogger("shopkit.messaging")

# Every stream of the platform, declared once so any service can create them on first connect.
STREAMS: dict[str, list[str]] = {
    "ORDERS": ["order.>"],
    "PAYMENTS": ["payment.>"],
}
DUPLICATE_WINDOW_SECONDS = 300.0


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
        return cls(
            id=str(doc["id"]),
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

    async def publish(self, subject: str, payload: bytes, *, msg_id: str) -> None:
        if not self.connected or self._js is None:
            raise ConnectionError("broker is not connected")
        await self._js.publish(subject, payload, headers={"Nats-Msg-Id": msg_id})

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
        Index("ix_outbox_unpublished", "published_at", "created_at"),
    )


async def enqueue(session: AsyncSession, table: Table, subject: str, data: dict[str, Any]) -> str:
    """Add an event to the caller's transaction: it is published only if that commits."""
    event_id = str(uuid.uuid4())
    now = utcnow()
    envelope = {"id": event_id, "type": subject, "occurred_at": now.isoformat(), "data": data}
    await session.execute(
        table.insert().values(
            id=event_id, subject=subject, payload=json.dumps(envelope), created_at=now
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
                    select(t.c.id, t.c.subject, t.c.payload)
                    .where(t.c.published_at.is_(None))
                    .order_by(t.c.created_at)
                    .limit(self._batch)
                )
            ).all()
        published: list[str] = []
        try:
            for row in rows:
                await self._broker.publish(row.subject, row.payload.encode(), msg_id=row.id)
                published.append(row.id)
        finally:
            if published:
                async with self._db.session() as session:
                    await session.execute(
                        update(t).where(t.c.id.in_(published)).values(published_at=utcnow())
                    )
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
) -> None:
    """Run a durable pull consumer forever: ack after the handler succeeds, nak with backoff when
    it fails, and terminate messages that can never succeed (not an event, or out of attempts)."""
    while True:
        sub: JetStreamContext.PullSubscription | None = None
        try:
            js = await broker.jetstream()
            sub = await js.pull_subscribe(
                subject,
                durable=durable,
                stream=stream,
                config=ConsumerConfig(ack_wait=ack_wait, max_deliver=max_deliver),
            )
            while True:
                _stop_if_cancelled()
                try:
                    msgs = await sub.fetch(batch=16, timeout=1)
                except NatsTimeoutError:
                    continue
                for msg in msgs:
                    await _deliver(msg, handler, max_deliver)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            _stop_if_cancelled()
            log.warning("consumer %s: %s", durable, exc)
            await asyncio.sleep(1.0)
        finally:
            # Left subscribed, replies still queued for it make Broker.close()'s drain wait its
            # full timeout (30 s) at every shutdown; unacked messages are redelivered anyway.
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()


def _stop_if_cancelled() -> None:
    # On Python 3.11 a cancellation can be swallowed when it races a reply (asyncio.wait_for,
    # nats-py's next_msg); the request stays recorded, and honouring it here keeps shutdown from
    # waiting on this loop forever.
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def _deliver(msg: Msg, handler: Handler, max_deliver: int) -> None:
    attempt = msg.metadata.num_delivered or 1
    try:
        event = Event.parse(msg.data, delivery=attempt, last_delivery=attempt >= max_deliver)
    except (ValueError, KeyError) as exc:
        log.error("dropping a message that is not an event on %s: %s", msg.subject, exc)
        await msg.term()
        return
    # Messages of a batch are handled one after another: restart the ack timer so the later
    # ones are not redelivered while they wait their turn.
    await msg.in_progress()
    try:
        await handler(event)
    except Exception as exc:
        if event.last_delivery:
            log.error("giving up on event %s after %d attempts: %s", event.id, attempt, exc)
            await msg.term()
        else:
            log.warning("event %s failed (attempt %d): %s", event.id, attempt, exc)
            await msg.nak(delay=min(2.0**attempt * 0.1, 10.0))
        return
    await msg.ack()
