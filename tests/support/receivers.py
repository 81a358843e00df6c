"""Real local services for notification tests: an SMTP server, an HTTP receiver, a worker."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from email import message_from_bytes
from email.message import Message
from typing import Any, Literal

from aiohttp import web
from aiosmtpd.controller import Controller

from orderly.core.db import Database
from orderly.core.jobs import Task, Worker, WorkerOptions


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    """Poll *check* until it holds (jobs are asynchronous by nature)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


# ---------------------------------------------------------------- SMTP


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 Message accepted for delivery"


class SmtpServer:
    """An aiosmtpd server on a fixed port that a test can stop and start again."""

    def __init__(self, port: int | None = None, **options: Any) -> None:
        self.port = port or free_port()
        self._inbox = _Inbox()
        self._controller: Controller | None = None
        self._options = options  # aiosmtpd SMTP options (authenticator, auth_required, …)

    @property
    def url(self) -> str:
        """The ``ORDERLY_SMTP_URL`` that reaches this server."""
        return f"smtp://127.0.0.1:{self.port}"

    @property
    def messages(self) -> list[Message]:
        """Every message received, across restarts."""
        return self._inbox.messages

    def start(self) -> None:
        """Listen (in aiosmtpd's own thread)."""
        self._controller = Controller(
            self._inbox, hostname="127.0.0.1", port=self.port, **self._options
        )
        self._controller.start()

    def stop(self) -> None:
        """Stop listening; further connections are refused."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


# ---------------------------------------------------------------- HTTP

Action = int | Literal["hang"]


@dataclasses.dataclass(frozen=True)
class Received:
    """One request as the receiver saw it."""

    headers: Mapping[str, str]
    body: bytes


class HttpReceiver:
    """A real HTTP server on 127.0.0.1: answers from ``script`` first, then ``default``."""

    def __init__(self, script: Sequence[Action] = (), default: Action = 204) -> None:
        self.script = list(script)
        self.default: Action = default
        self.requests: list[Received] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """Where to POST."""
        return f"http://127.0.0.1:{self.port}/hooks"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(Received(dict(request.headers), await request.read()))
        action = self.script.pop(0) if self.script else self.default
        if action == "hang":
            await asyncio.sleep(3600)
            action = 504
        return web.Response(status=action)

    async def start(self) -> None:
        """Listen on a free port."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.2)
        await self._runner.setup()
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))  # the kernel picks the port: no race with other tests
        self.port = listener.getsockname()[1]
        await web.SockSite(self._runner, listener).start()

    async def stop(self) -> None:
        """Stop listening and cancel handlers that still hang."""
        if self._runner is not None:
            await self._runner.cleanup()


@asynccontextmanager
async def running_worker(
    database: Database, tasks: Sequence[Task], resources: Mapping[type[Any], Any]
) -> AsyncIterator[Worker]:
    """An in-process worker for *tasks* with *resources*, stopped on exit."""
    worker = Worker(
        database,
        tasks,
        options=WorkerOptions(batch_size=5, concurrency=10, heartbeat_timeout=timedelta(seconds=2)),
        resources=resources,
    )
    running = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.started.wait(), 10)
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(running, 30)
