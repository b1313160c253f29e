"""Real components for the notification tests: NATS JetStream, an SMTP server, the app.

Most tests reach the user service through :class:`UserStandIn`, a stand-in (not the real user
service): an aiohttp server on loopback that answers ``GET /internal/users/{id}`` and the JWKS as
docs/internal-api.md fixes them, and that a test can switch to 503 or ask for unknown ids, which
the real service cannot be made to do. ``test_with_user_service.py`` runs the real user service.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from fastapi import FastAPI
from nats.js import JetStreamContext
from shop_notification.app import create_app
from shop_notification.models import Notification
from shop_notification.settings import NotificationSettings
from shopkit.db import Database
from shopkit.http import INTERNAL_TOKEN_HEADER
from shopkit.messaging import ensure_streams
from shopkit.settings import DEV_INTERNAL_TOKEN
from shopkit.testing import TokenFactory, eventually, free_port, nats_server, running_app
from sqlalchemy import select


@dataclass
class Received:
    recipients: list[str]
    message: EmailMessage


class SmtpSink:
    """A real SMTP server (aiosmtpd) on loopback that keeps what it receives.

    Stopped, its port refuses connections: that is "the mail relay is down".
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[Received] = []
        # Recipient -> seconds the server takes before accepting a message for it: a slow relay.
        self.slow: dict[str, float] = {}
        # Recipients of the messages whose DATA has reached the server, accepted yet or not.
        self.data_started: list[str] = []
        self._controller: Controller | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - the name aiosmtpd calls
        self.data_started.extend(envelope.rcpt_tos)
        delay = max((self.slow.get(r, 0.0) for r in envelope.rcpt_tos), default=0.0)
        if delay:
            await asyncio.sleep(delay)
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.received.append(Received(list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"

    async def start(self) -> None:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        await asyncio.to_thread(self._controller.start)

    async def stop(self) -> None:
        if self._controller is not None:
            await asyncio.to_thread(self._controller.stop)
            self._controller = None

    def to(self, address: str) -> list[Received]:
        return [r for r in self.received if address in r.recipients]


@dataclass
class UserStandIn:
    """Stand-in for the user service (see the module docstring): real HTTP on loopback."""

    tokens: TokenFactory
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    available: bool = True
    # Answer 503 to this many lookups first (then as ``available`` says).
    unavailable_for: int = 0
    lookups: int = 0
    url: str = ""

    def add(self, email: str, name: str = "Sam Baker") -> str:
        user_id = str(uuid.uuid4())
        self.users[user_id] = {"id": user_id, "email": email, "name": name, "roles": ["customer"]}
        return user_id

    async def _jwks(self, _: web.Request) -> web.Response:
        return web.json_response(self.tokens.jwks)

    async def _user(self, request: web.Request) -> web.Response:
        if request.headers.get(INTERNAL_TOKEN_HEADER) != DEV_INTERNAL_TOKEN:
            return web.json_response({"status": 401}, status=401)
        self.lookups += 1
        if not self.available or self.lookups <= self.unavailable_for:
            return web.json_response({"status": 503}, status=503)
        user = self.users.get(request.match_info["user_id"])
        if user is None:
            return web.json_response({"status": 404, "title": "Not found"}, status=404)
        return web.json_response(user)


@pytest.fixture
def nats_url(tmp_path: Path) -> Iterator[str]:
    with nats_server(tmp_path / "nats") as url:
        yield url


@pytest.fixture
async def bus(nats_url: str) -> AsyncIterator[Bus]:
    nc = await nats.connect(nats_url)
    js = nc.jetstream(timeout=5)
    await ensure_streams(js)
    try:
        yield Bus(js)
    finally:
        await nc.drain()


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpSink]:
    sink = SmtpSink()
    await sink.start()
    try:
        yield sink
    finally:
        await sink.stop()


@pytest.fixture
async def users(tokens: TokenFactory) -> AsyncIterator[UserStandIn]:
    stand_in = UserStandIn(tokens)
    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", stand_in._jwks)
    app.router.add_get("/internal/users/{user_id}", stand_in._user)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stand_in.url = f"http://127.0.0.1:{port}"
    try:
        yield stand_in
    finally:
        await runner.cleanup()


@pytest.fixture
def make_settings(tmp_path: Path, nats_url: str, users: UserStandIn, smtp: SmtpSink) -> Any:
    def build(**overrides: Any) -> NotificationSettings:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "nats_url": nats_url,
            "user_url": users.url,
            "mail_transport": "smtp",
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp.port,
            "smtp_timeout_seconds": 5,
            "log_json": False,
            **overrides,
        }
        return NotificationSettings(**values)

    return build


@pytest.fixture
def app(make_settings: Any) -> FastAPI:
    return create_app(make_settings())


CONSUMERS = (("ORDERS", "notification-orders"), ("PAYMENTS", "notification-payments"))


class Bus:
    """Publishes event envelopes the way a publisher's outbox relay does, and reads consumer
    state, so tests can tell when every message has been settled."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js = js

    async def publish(
        self,
        subject: str,
        data: dict[str, Any],
        *,
        event_id: str | None = None,
        msg_id: str | None = None,
    ) -> str:
        event_id = event_id or str(uuid.uuid4())
        envelope = {
            "id": event_id,
            "type": subject,
            "occurred_at": "2025-05-01T12:00:00+00:00",
            "data": data,
        }
        await self.publish_raw(subject, json.dumps(envelope).encode(), msg_id=msg_id or event_id)
        return event_id

    async def publish_raw(self, subject: str, payload: bytes, *, msg_id: str) -> int:
        ack = await self.js.publish(subject, payload, headers={"Nats-Msg-Id": msg_id})
        assert not ack.duplicate, "JetStream dropped the message as a duplicate"
        seq: int = ack.seq
        return seq

    async def settled(self, stream: str, durable: str, *, through: int) -> bool:
        """True once the consumer has delivered every message up to stream sequence ``through``
        and none of them waits for an ack or a redelivery."""
        try:
            info = await self.js.consumer_info(stream, durable)
        except nats.js.errors.NotFoundError:
            return False
        return (
            info.delivered.stream_seq >= through
            and info.num_ack_pending == 0
            and info.num_pending == 0
        )

    async def idle(self) -> bool:
        """True when both consumers of the service have nothing in flight: every handler has
        returned, so leaving the app now interrupts no transaction."""
        for stream, durable in CONSUMERS:
            try:
                info = await self.js.consumer_info(stream, durable)
            except nats.js.errors.NotFoundError:
                return False
            if info.num_ack_pending or info.num_pending:
                return False
        return True

    @staticmethod
    def confirmed(
        customer_id: str, *, order_id: str | None = None, amount: int = 1250
    ) -> dict[str, Any]:
        """The data of an order.confirmed event as the order service publishes it."""
        return {
            "order_id": order_id or str(uuid.uuid4()),
            "customer_id": customer_id,
            "total": {"amount": amount, "currency": "USD"},
            "items": [
                {
                    "product_id": str(uuid.uuid4()),
                    "name": "Sourdough Loaf",
                    "quantity": 2,
                    "unit_price": {"amount": 625, "currency": "USD"},
                }
            ],
        }


Rows = Callable[[], Awaitable[list[Notification]]]


SETTLE_SECONDS = 10.0


@pytest.fixture
def rows(app: FastAPI) -> Rows:
    """The notifications table as the running app sees it, once no send is in flight: the relay
    has a message before the sender records it as sent, so a test that saw the email arrive
    would otherwise race the bookkeeping."""

    async def read() -> list[Notification]:
        db: Database = app.state.db
        deadline = time.monotonic() + SETTLE_SECONDS
        while True:
            async with db.session() as session:
                query = select(Notification).order_by(Notification.created_at)
                found = list((await session.execute(query)).scalars().all())
            if all(n.status != "sending" for n in found) or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.02)

    return read


Serving = Callable[[FastAPI], AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def serving(bus: Bus) -> Serving:
    """``running_app`` that, on the way out, waits for the consumers to finish what they hold."""

    @asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
        async with running_app(app) as client:
            yield client
            assert await eventually(bus.idle, timeout=30), "the consumers did not settle"

    return run
