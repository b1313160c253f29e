"""Mail transports behind one small interface: SMTP for real relays, a mailbox directory locally.

Both take a complete RFC 5322 message (:class:`email.message.EmailMessage`); anything that keeps
a message from being handed over raises :class:`MailError`, which the caller treats as "try
again later".
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from pathlib import Path
from typing import Protocol

import aiosmtplib

from shop_notification.settings import NotificationSettings


class MailError(Exception):
    """The message was not handed over; it may be retried."""


class MailTransport(Protocol):
    async def send(self, message: EmailMessage) -> None: ...


def build_message(
    *, sender: str, recipient: str, subject: str, body: str, message_id: str
) -> EmailMessage:
    """A plain-text message. The Message-ID is derived from the notification, so a message
    resent after a crash carries the same id and receivers can recognize the duplicate."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    _, sender_address = parseaddr(sender)
    domain = sender_address.rpartition("@")[2] or "sweetslice.local"
    message["Message-ID"] = f"<{message_id}@{domain}>"
    message.set_content(body)
    return message


class SmtpTransport:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str | None,
        password: str | None,
        starttls: bool,
        timeout: float,
    ) -> None:
        self._host = host
        self._port = port
        self._username = username
        self._password = password
        self._starttls = starttls
        self._timeout = timeout

    async def send(self, message: EmailMessage) -> None:
        try:
            await aiosmtplib.send(
                message,
                hostname=self._host,
                port=self._port,
                username=self._username,
                password=self._password,
                start_tls=self._starttls,
                timeout=self._timeout,
            )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise MailError(f"SMTP {self._host}:{self._port}: {type(exc).__name__}") from exc


class MailboxTransport:
    """Writes each message as a ``.eml`` file, the local stand-in for an outbox a person reads.

    Files appear atomically (written aside, then linked into place), so a reader never sees half
    a message. Like a real mailbox it keeps every message it is given: a second send of one
    notification does not replace the first file but lands beside it (``<id>.2.eml``), so a
    duplicate email shows.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, message: EmailMessage) -> None:
        try:
            await asyncio.to_thread(self._write, message)
        except OSError as exc:
            raise MailError(f"mailbox {self.directory}: {exc.strerror or exc}") from exc

    def _write(self, message: EmailMessage) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        message_id = str(message["Message-ID"] or "").strip("<>").partition("@")[0]
        name = f"{message_id or os.urandom(8).hex()}.eml"
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(message.as_bytes())
                out.flush()
                os.fsync(out.fileno())
            _link_unique(tmp, self.directory, name)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _link_unique(source: str, directory: Path, name: str) -> None:
    """Give ``source`` the first free name of ``name``, ``stem.2.eml``, ...: linking never
    replaces a file, so two writers of the same name cannot lose a message."""
    stem = name.removesuffix(".eml")
    for n in range(1, 10_000):
        target = directory / (name if n == 1 else f"{stem}.{n}.eml")
        try:
            os.link(source, target)
        except FileExistsError:
            continue
        return
    raise OSError(f"no free name for {name}")


def create_transport(settings: NotificationSettings) -> MailTransport:
    if settings.mail_transport == "smtp":
        return SmtpTransport(
            host=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=(
                settings.smtp_password.get_secret_value() if settings.smtp_password else None
            ),
            starttls=settings.smtp_starttls,
            timeout=settings.smtp_timeout_seconds,
        )
    return MailboxTransport(settings.service_data_dir / "mailbox")
