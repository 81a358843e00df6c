"""What one HTTP request did, for observers that count per request (flag guard, SLOs).

The HTTP middleware opens a scope per request (:func:`begin`) and closes it
with the outcome (:func:`end`); code in between notes which flags it
evaluated (:func:`note_flag`). Observers registered with :func:`observe`
receive every finished request; they must be cheap and never raise (they
only bump in-process counters, flushed to PostgreSQL in the background).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextvars import ContextVar, Token
from typing import ClassVar

from orderly.core.telemetry import get_logger

log = get_logger(__name__)


@dataclasses.dataclass(slots=True)
class RequestScope:
    """Flags evaluated during one request (name → cohort on/off), and those self-reported."""

    flags: dict[str, bool] = dataclasses.field(default_factory=dict)
    reported: set[str] = dataclasses.field(default_factory=set)


@dataclasses.dataclass(frozen=True, slots=True)
class FinishedRequest:
    """A request as observers see it once answered."""

    method: str
    route: str
    status: int
    seconds: float
    scope: RequestScope


Observer = Callable[[FinishedRequest], None]

_current: ContextVar[RequestScope | None] = ContextVar("orderly_request_scope", default=None)
_observers: list[Observer] = []


def begin() -> Token[RequestScope | None]:
    """Open a scope for the current request (middleware)."""
    return _current.set(RequestScope())


def end(
    token: Token[RequestScope | None], method: str, route: str, status: int, seconds: float
) -> None:
    """Close the request's scope and tell every observer (middleware)."""
    scope = _current.get()
    _current.reset(token)
    if scope is None or not _observers:
        return
    finished = FinishedRequest(method, route, status, seconds, scope)
    for observer in tuple(_observers):
        try:
            observer(finished)
        except Exception as exc:  # noqa: BLE001 - counting must never fail a request
            log.warning("request_observer_failed", error=type(exc).__name__)


def current() -> RequestScope | None:
    """The current request's scope (None outside a request)."""
    return _current.get()


def note_flag(name: str, enabled: bool) -> None:
    """Record that this request evaluated flag *name* (first answer wins for the cohort)."""
    scope = _current.get()
    if scope is not None:
        scope.flags.setdefault(name, enabled)


def observe(observer: Observer) -> None:
    """Register *observer* for every finished request in this process."""
    _observers.append(observer)


def unobserve(observer: Observer) -> None:
    """Stop telling *observer* (no error when it was not registered)."""
    if observer in _observers:
        _observers.remove(observer)


class FlushingObserver(ABC):
    """An observer that counts finished requests in memory and writes them in the background.

    The flag guard's outcomes and the SLO request counts share this life: register,
    flush every ``flush_seconds`` (a failed write keeps its counts for the next tick),
    and on stop unregister and write what is left. Subclasses count and write.
    """

    task_name: ClassVar[str]
    flush_failed_event: ClassVar[str]

    def __init__(self, *, flush_seconds: float) -> None:
        self.flush_seconds = flush_seconds
        self._task: asyncio.Task[None] | None = None

    @abstractmethod
    def observe_request(self, finished: FinishedRequest) -> None:
        """Count one finished request (cheap; never raises)."""

    @abstractmethod
    async def flush(self) -> None:
        """Write what is counted; on failure keep it for the next flush and raise."""

    async def start(self) -> None:
        """Observe finished requests and flush periodically."""
        observe(self.observe_request)
        self._task = asyncio.create_task(self._loop(), name=self.task_name)

    async def stop(self) -> None:
        """Stop observing and flush what is counted."""
        unobserve(self.observe_request)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self.flush()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.flush_seconds)
            try:
                await self.flush()
            except Exception as exc:  # noqa: BLE001 - retried at the next tick
                log.warning(self.flush_failed_event, error=type(exc).__name__)
