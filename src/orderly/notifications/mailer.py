"""E-mail transports: SMTP through aiosmtplib, or a Maildir in the data dir when none is set.

Both are resources a worker builds once (``build_mailer``) and tasks reach with
``ctx.resource(Mailer)``. Every message carries a Message-ID derived from its
event key, so a copy re-sent after a crash is recognisably the same message;
the Maildir transport even makes the re-send a no-op (same file name).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import socket
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from urllib.parse import unquote, urlsplit

import aiosmtplib

from orderly.config import Settings
from orderly.core.outbound import Breakers
from orderly.core.telemetry import get_logger

log = get_logger(__name__)

SMTP_BREAKER = "smtp"
# The server answered and refused this message: it is up, so the breaker stays closed.
_REFUSALS = (
    aiosmtplib.SMTPRecipientsRefused,
    aiosmtplib.SMTPRecipientRefused,
    aiosmtplib.SMTPSenderRefused,
)


@dataclasses.dataclass(frozen=True)
class Email:
    """One plain-text e-mail for one notification event."""

    event_key: str
    to: str
    subject: str
    body: str


def message_id_for(event_key: str, sender: str) -> str:
    """A Message-ID that is the same for every send of *event_key* (receivers dedupe on it)."""
    digest = hashlib.sha256(event_key.encode()).hexdigest()[:40]
    domain = sender.rpartition("@")[2].strip(" <>") or "orderly.localhost"
    return f"<{digest}@{domain}>"


def compose(email: Email, *, sender: str) -> EmailMessage:
    """Build the RFC 5322 message (header injection is refused by the email package)."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = email.to
    message["Subject"] = email.subject
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = message_id_for(email.event_key, sender)
    message.set_content(email.body)
    return message


class Mailer:
    """Delivers a composed message somewhere a human will read it (the resource's key type)."""

    transport: str = "mailer"

    async def send(self, message: EmailMessage) -> None:
        """Hand *message* over; raise if it was not accepted."""
        raise NotImplementedError


class SmtpMailer(Mailer):
    """SMTP submission from ``smtp://user:pass@host:port`` (STARTTLS when offered) or ``smtps://``."""

    transport = "smtp"

    def __init__(
        self, url: str, breakers: Breakers, *, timeout: float = 10.0, breaker: str = SMTP_BREAKER
    ) -> None:
        """Connect per message, within *timeout* seconds per step, through breaker *breaker*."""
        parts = urlsplit(url)
        self.hostname = parts.hostname or "localhost"
        self.implicit_tls = parts.scheme == "smtps"
        self.port = parts.port or (465 if self.implicit_tls else 25)
        self._username = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else None
        self.timeout = timeout
        self.breakers = breakers
        self.breaker = breaker

    async def send(self, message: EmailMessage) -> None:
        """Submit *message*; connection trouble counts against the SMTP breaker."""
        async with self.breakers.guard(self.breaker, ignore=_REFUSALS):
            await aiosmtplib.send(
                message,
                hostname=self.hostname,
                port=self.port,
                username=self._username,
                password=self._password,
                use_tls=self.implicit_tls,
                start_tls=False if self.implicit_tls else None,
                timeout=self.timeout,
            )

    def __repr__(self) -> str:
        return f"SmtpMailer({self.hostname}:{self.port})"  # never the credentials


class MaildirMailer(Mailer):
    """Writes each message into a Maildir (``tmp`` → ``new``, fsynced, atomic rename)."""

    transport = "maildir"

    def __init__(self, root: Path) -> None:
        """Deliver into the Maildir at *root* (created on first use)."""
        self.root = root

    async def send(self, message: EmailMessage) -> None:
        """Deliver *message*; a message with the same Message-ID is delivered only once."""
        await asyncio.to_thread(self._deliver, message)

    def _deliver(self, message: EmailMessage) -> None:
        for sub in ("tmp", "new", "cur"):
            (self.root / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
        # A name derived from the Message-ID (not the clock) makes a re-send
        # replace the same file instead of adding a second copy.
        name = hashlib.sha256(str(message["Message-ID"]).encode()).hexdigest()[:40]
        name = f"{name}.{socket.gethostname().replace('/', '_').replace(':', '_')}"
        final = self.root / "new" / name
        if final.exists() or any((self.root / "cur").glob(f"{name}:*")):
            log.info("maildir_already_delivered", file=name)
            return
        temporary = self.root / "tmp" / name
        data = message.as_bytes()
        with os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(temporary, final)
        directory = os.open(self.root / "new", os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def build_mailer(settings: Settings, breakers: Breakers, *, timeout: float = 10.0) -> Mailer:
    """SMTP when ``ORDERLY_SMTP_URL`` is set, else ``<data_dir>/maildir``."""
    if settings.smtp_url is not None:
        return SmtpMailer(settings.smtp_url.get_secret_value(), breakers, timeout=timeout)
    return MaildirMailer(settings.data_dir / "maildir")
