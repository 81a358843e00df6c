"""E-mail notifications against a real aiosmtpd server and a real Maildir."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from orderly.config import Settings
from orderly.core.db import Database
from orderly.core.jobs import RetryPolicy, Task
from orderly.core.outbound import Breakers
from orderly.notifications import service, tasks
from orderly.notifications.mailer import MaildirMailer, Mailer, message_id_for
from orderly.notifications.schemas import EmailJob
from tests.conftest import make_settings
from tests.support.receivers import SmtpServer, eventually, running_worker

FAST = RetryPolicy(max_attempts=30, base_delay=0.1, max_delay=0.4)
SEND_EMAIL = dataclasses.replace(tasks.send_email, retry=FAST)


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """A real SMTP server on a free port, stopped after the test."""
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


def _settings(database_url: str, tmp_path: Path, smtp_url: str | None = None) -> Settings:
    overrides = {"smtp_url": smtp_url} if smtp_url else {}
    return make_settings(database_url, tmp_path, mail_from="shop@orderly.example", **overrides)


def _resources(settings: Settings, breakers: Breakers | None = None) -> dict[type, object]:
    return {
        Settings: settings,
        **tasks.build_resources(settings, breakers or Breakers(), smtp_timeout=2.0),
    }


async def _enqueue(database: Database, event_key: str, order_id: str) -> None:
    async with database.transaction() as tx:
        await service.enqueue_email(
            tx,
            event_key=event_key,
            to="ada@customer.example",
            subject=f"Order {order_id} confirmed",
            body=f"Thank you! Your order {order_id} is confirmed.",
        )
        await tx.commit()


async def _queue_empty(raw_db: asyncpg.Connection) -> bool:
    return int(await raw_db.fetchval("SELECT count(*) FROM pgqueuer")) == 0


async def test_confirmation_email_reaches_smtp_once(
    database: Database,
    database_url: str,
    raw_db: asyncpg.Connection,
    smtp: SmtpServer,
    tmp_path: Path,
) -> None:
    settings = _settings(database_url, tmp_path, smtp.url)
    order_id = str(uuid.uuid4())
    key = f"order:{order_id}:confirmation"
    async with running_worker(database, [SEND_EMAIL], _resources(settings)):
        await _enqueue(database, key, order_id)
        await eventually(lambda: _true(len(smtp.messages) == 1))
        await eventually(lambda: _queue_empty(raw_db))
        # The same event enqueued again (a replayed request, an over-eager caller): no 2nd mail.
        await _enqueue(database, key, order_id)
        await eventually(lambda: _queue_empty(raw_db))

    assert len(smtp.messages) == 1
    (message,) = smtp.messages
    assert message["To"] == "ada@customer.example"
    assert message["From"] == "shop@orderly.example"
    assert order_id in message["Subject"]
    assert order_id in message.get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert message["Message-ID"] == message_id_for(key, "shop@orderly.example")
    row = await raw_db.fetchrow("SELECT * FROM notification WHERE event_key = $1", key)
    assert row is not None
    assert (row["channel"], row["recipient"]) == ("email", "ada@customer.example")
    assert row["message_id"] == message["Message-ID"]
    assert row["sent_at"] is not None


async def test_smtp_down_retries_then_exactly_one_copy_arrives(
    database: Database, database_url: str, raw_db: asyncpg.Connection, tmp_path: Path
) -> None:
    smtp = SmtpServer()  # not started: connections are refused
    settings = _settings(database_url, tmp_path, smtp.url)
    order_id = str(uuid.uuid4())
    key = f"order:{order_id}:confirmation"
    breakers = Breakers(threshold=3, ttl=0.3)
    try:
        async with running_worker(database, [SEND_EMAIL], _resources(settings, breakers)):
            await _enqueue(database, key, order_id)

            async def retried_twice() -> bool:
                attempts = await raw_db.fetchval("SELECT max(attempts) FROM pgqueuer")
                return attempts is not None and attempts >= 2

            await eventually(retried_twice)
            assert smtp.messages == []
            smtp.start()
            await eventually(lambda: _true(len(smtp.messages) >= 1))
            await eventually(lambda: _queue_empty(raw_db))
            await asyncio.sleep(0.5)  # time for a duplicate to show up, if there were one
    finally:
        smtp.stop()

    assert len(smtp.messages) == 1
    attempt = await raw_db.fetchval("SELECT attempt FROM notification WHERE event_key = $1", key)
    assert attempt >= 3
    errors = await raw_db.fetchval(
        "SELECT count(*) FROM pgqueuer_log WHERE traceback IS NOT NULL AND entrypoint = $1",
        service.SEND_EMAIL,
    )
    assert errors >= 2


async def test_maildir_delivery_without_smtp(
    database: Database, database_url: str, raw_db: asyncpg.Connection, tmp_path: Path
) -> None:
    settings = _settings(database_url, tmp_path)
    order_id = str(uuid.uuid4())
    key = f"order:{order_id}:confirmation"
    async with running_worker(database, [SEND_EMAIL], _resources(settings)):
        await _enqueue(database, key, order_id)
        await eventually(lambda: _true(any((tmp_path / "maildir" / "new").glob("*"))))
        await eventually(lambda: _queue_empty(raw_db))
        await _enqueue(database, key, order_id)
        await eventually(lambda: _queue_empty(raw_db))

    maildir = tmp_path / "maildir"
    files = list((maildir / "new").iterdir())
    assert len(files) == 1
    assert list((maildir / "tmp").iterdir()) == []  # written in tmp, renamed into new
    content = files[0].read_text()
    assert f"Message-ID: {message_id_for(key, 'shop@orderly.example')}" in content
    assert order_id in content
    assert files[0].stat().st_mode & 0o777 == 0o600


async def test_crash_after_send_before_commit_resends_with_the_same_message_id(
    database: Database, smtp: SmtpServer, tmp_path: Path, database_url: str
) -> None:
    """The documented at-least-once window: the copy is recognisable by its Message-ID."""
    settings = _settings(database_url, tmp_path, smtp.url)
    mailer = tasks.build_resources(settings, Breakers())[Mailer]
    job = EmailJob(event_key="order:crash:confirmation", to="a@b.example", subject="S", body="B")

    async with database.transaction() as tx:
        assert await service.send_email(tx, mailer, job, sender=settings.mail_from)
        await tx.rollback()  # the commit never happened (crash, lost connection)
    async with database.transaction() as tx:
        assert await service.send_email(tx, mailer, job, sender=settings.mail_from)
        await tx.commit()
    async with database.transaction() as tx:
        assert not await service.send_email(tx, mailer, job, sender=settings.mail_from)
        await tx.commit()

    assert len(smtp.messages) == 2
    assert smtp.messages[0]["Message-ID"] == smtp.messages[1]["Message-ID"]


async def test_concurrent_runs_of_one_event_send_one_email(
    database: Database, smtp: SmtpServer, tmp_path: Path, database_url: str
) -> None:
    """Two workers on the same event: PostgreSQL's unique key makes the second wait, then skip."""
    settings = _settings(database_url, tmp_path, smtp.url)
    mailer = tasks.build_resources(settings, Breakers())[Mailer]
    job = EmailJob(event_key="order:race:confirmation", to="a@b.example", subject="S", body="B")

    async def run() -> bool:
        async with database.transaction() as tx:
            sent = await service.send_email(tx, mailer, job, sender=settings.mail_from)
            await asyncio.sleep(0.2)  # keep the first transaction open while the other waits
            await tx.commit()
            return sent

    results = await asyncio.gather(run(), run())
    assert sorted(results) == [False, True]
    assert len(smtp.messages) == 1


async def test_maildir_resend_of_the_same_message_keeps_one_file(tmp_path: Path) -> None:
    from orderly.notifications.mailer import Email, compose

    mailer = MaildirMailer(tmp_path / "maildir")
    message = compose(Email("order:1:paid", "a@b.example", "Paid", "Thanks"), sender="s@x.example")
    await mailer.send(message)
    await mailer.send(message)
    assert len(list((tmp_path / "maildir" / "new").iterdir())) == 1


async def _true(value: bool) -> bool:
    return value


def test_send_email_task_is_registered_with_the_worker() -> None:
    from orderly.worker import all_tasks

    names = {t.name for t in all_tasks()}
    assert {"notifications.send_email", "notifications.deliver_webhook"} <= names
    assert isinstance(SEND_EMAIL, Task)


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
async def test_smtp_credentials_from_the_url_are_used(
    database: Database, tmp_path: Path, database_url: str
) -> None:
    from aiosmtpd.smtp import AuthResult

    seen: list[tuple[bytes, bytes]] = []

    def authenticator(
        server: object, session: object, envelope: object, mechanism: str, auth_data: object
    ) -> AuthResult:
        login = (getattr(auth_data, "login", b""), getattr(auth_data, "password", b""))
        seen.append(login)
        return AuthResult(success=login == (b"shop@x", b"p@ss:w/rd"))

    server = SmtpServer(authenticator=authenticator, auth_required=True, auth_require_tls=False)
    server.start()
    try:
        url = f"smtp://shop%40x:p%40ss%3Aw%2Frd@127.0.0.1:{server.port}"
        settings = _settings(database_url, tmp_path, url)
        mailer = tasks.build_resources(settings, Breakers())[Mailer]
        assert "p@ss" not in repr(mailer)
        job = EmailJob(event_key="order:auth:confirmation", to="a@b.example", subject="S", body="B")
        async with database.transaction() as tx:
            assert await service.send_email(tx, mailer, job, sender=settings.mail_from)
            await tx.commit()
    finally:
        server.stop()
    assert seen == [(b"shop@x", b"p@ss:w/rd")]
    assert len(server.messages) == 1
