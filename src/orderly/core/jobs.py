"""Background jobs on PostgreSQL, through PgQueuer.

Why PgQueuer: it claims jobs with ``FOR UPDATE SKIP LOCKED``, wakes workers by
``LISTEN/NOTIFY``, re-picks a job whose worker stopped heart-beating (the
visibility timeout), persists retries with a delay, and parks terminal failures
for a manual re-queue — and it drains ~16k no-op jobs/s per worker here, where
procrastinate drains under 1k (see MEASUREMENTS.md).

Application code enqueues with :func:`enqueue` in its own transaction: the job row
is written by the caller's transaction, so a rollback means the job never
existed and a commit means it will run (no dual write).

Job states as orderly reports them:
``queued`` (due or scheduled, never failed), ``failed`` (failed, waiting for a
retry), ``running`` (picked by a worker), ``dead`` (out of attempts; an admin
may retry it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

import asyncpg
import orjson
from pgqueuer.adapters.drivers.asyncpg import AsyncpgPoolDriver
from pgqueuer.adapters.persistence.qb import QueryQueueBuilder
from pgqueuer.core.applications import PgQueuer
from pgqueuer.core.executors import EntrypointExecutor, EntrypointExecutorParameters
from pgqueuer.domain import errors as pgq_errors
from pgqueuer.domain import models as pgq_models

from orderly import errors
from orderly.core.db import Database, Tx
from orderly.core.telemetry import (
    JOB_DURATION,
    JOB_OUTCOMES,
    bound_context,
    current_request_id,
    get_logger,
    tracer,
)

log = get_logger(__name__)


class JobStatus(StrEnum):
    """A job's state as orderly reports it: one enum for the admin API, the metrics and the SQL.

    PgQueuer's own states map onto these in :data:`_STATUS_SQL` / :data:`_STATUS_FILTER`.
    """

    queued = "queued"
    failed = "failed"
    running = "running"
    dead = "dead"


QUEUE_TABLE = "pgqueuer"
QUEUE_LOG_TABLE = "pgqueuer_log"

R = TypeVar("R")


class JobFailed(Exception):
    """Raised by a task to fail this attempt with a message (retried unless out of attempts)."""


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with 'equal jitter': attempt n waits in [b·2ⁿ⁻¹, b·2ⁿ], capped."""

    max_attempts: int = 8
    base_delay: float = 2.0
    max_delay: float = 600.0

    def delay(self, failed_attempts: int) -> timedelta:
        """Delay before the next attempt after *failed_attempts* failures (≥ 1)."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (failed_attempts - 1))
        return timedelta(seconds=ceiling / 2 + random.uniform(0, ceiling / 2))  # noqa: S311


class JobContext:
    """What a task receives: its own transaction (committed by the runner), and shared resources."""

    def __init__(
        self,
        *,
        tx: Tx,
        job_id: int,
        attempt: int,
        resources: Mapping[type[Any], Any],
    ) -> None:
        self.tx = tx
        self.job_id = job_id
        self.attempt = attempt
        self._resources = resources

    def resource(self, kind: type[R]) -> R:
        """The shared resource of type *kind* (an SMTP mailer, an HTTP client, …)."""
        try:
            value: R = self._resources[kind]
        except KeyError:
            raise LookupError(f"worker has no resource {kind.__name__}") from None
        return value


Handler = Callable[[JobContext, dict[str, Any]], Awaitable[None]]


@dataclasses.dataclass(frozen=True)
class Task:
    """A named job handler with its retry policy and per-attempt timeout."""

    name: str
    handler: Handler
    retry: RetryPolicy = RetryPolicy()
    timeout: float = 60.0
    schedule: str | None = None


def task(
    name: str,
    *,
    retry: RetryPolicy | None = None,
    timeout: float = 60.0,
    schedule: str | None = None,
) -> Callable[[Handler], Task]:
    """Declare a task named ``domain.verb``; ``schedule`` (cron) also runs it periodically."""

    def wrap(handler: Handler) -> Task:
        return Task(name, handler, retry or RetryPolicy(), timeout, schedule)

    return wrap


# ---------------------------------------------------------------- enqueue

_ENQUEUE_SQL = QueryQueueBuilder().build_enqueue_query("skip")


async def enqueue(
    tx: Tx,
    name: str,
    payload: Mapping[str, Any] | None = None,
    *,
    delay: timedelta | None = None,
    dedupe_key: str | None = None,
    priority: int = 0,
) -> int | None:
    """Insert a job in the transaction's transaction; it runs only if that transaction commits.

    With ``dedupe_key``, a second job with the same key is skipped (``None``)
    while the first one is still queued or running.
    """
    headers: dict[str, str] = {}
    request_id = current_request_id()
    if request_id:
        headers["request_id"] = request_id
    rows = await tx.fetch(
        _ENQUEUE_SQL,
        [priority],
        [name],
        [orjson.dumps(dict(payload or {}))],
        [delay or timedelta(0)],
        [dedupe_key],
        [orjson.dumps(headers).decode()],
    )
    return int(rows[0]["id"]) if rows else None


# ---------------------------------------------------------------- inspection


@dataclasses.dataclass(frozen=True)
class JobRecord:
    """A job as the admin API shows it."""

    id: int
    task: str
    status: JobStatus
    attempts: int
    payload: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    run_after: datetime
    last_error: str | None


# How PgQueuer's columns (status 'queued' | 'picked' | 'failed', attempts) map to a JobStatus.
_STATUS_FILTER: dict[JobStatus, str] = {
    JobStatus.queued: "j.status = 'queued' AND j.attempts = 0",
    JobStatus.failed: "j.status = 'queued' AND j.attempts > 0",
    JobStatus.running: "j.status = 'picked'",
    JobStatus.dead: "j.status = 'failed'",
}
_STATUS_SQL = (
    "CASE "
    + " ".join(f"WHEN {where} THEN '{status.value}'" for status, where in _STATUS_FILTER.items())
    + " END"
)


async def list_jobs(
    tx: Tx,
    *,
    status: JobStatus | None,
    limit: int,
    after_id: int | None = None,
) -> list[JobRecord]:
    """Jobs newest first, optionally by status, keyset-paginated by id."""
    where = [_STATUS_FILTER[status]] if status else []
    args: list[Any] = [limit]
    if after_id is not None:
        where.append("j.id < $2")
        args.append(after_id)
    return await _select_jobs(tx, where, args)


async def _select_jobs(tx: Tx, where: list[str], args: list[Any]) -> list[JobRecord]:
    """Jobs matching the fixed *where* fragments (values bound as $2…), newest first, LIMIT $1."""
    clause = ("WHERE " + " AND ".join(where)) if where else ""
    sql = f"""
        SELECT j.id, j.entrypoint, {_STATUS_SQL} AS state, j.attempts, j.payload,
               j.created, j.updated, j.execute_after,
               (SELECT l.traceback->>'exception_message' FROM {QUEUE_LOG_TABLE} l
                 WHERE l.job_id = j.id AND l.traceback IS NOT NULL
                 ORDER BY l.id DESC LIMIT 1) AS last_error
        FROM {QUEUE_TABLE} j {clause}
        ORDER BY j.id DESC LIMIT $1"""  # noqa: S608 - fixed fragments, values are bound
    rows = await tx.fetch(sql, *args)
    return [
        JobRecord(
            id=row["id"],
            task=row["entrypoint"],
            status=JobStatus(row["state"]),
            attempts=row["attempts"],
            payload=orjson.loads(row["payload"]) if row["payload"] else {},
            created_at=row["created"],
            updated_at=row["updated"],
            run_after=row["execute_after"],
            last_error=row["last_error"],
        )
        for row in rows
    ]


async def get_job(tx: Tx, job_id: int) -> JobRecord | None:
    """One job by id, or None when it is finished (finished jobs leave the queue table)."""
    found = await _select_jobs(tx, ["j.id = $2"], [1, job_id])
    return found[0] if found else None


async def retry_dead(tx: Tx, job_id: int) -> bool:
    """Re-queue a dead job now with a fresh attempt budget; False if it is not dead."""
    row = await tx.fetchrow(
        f"""WITH requeued AS (
              UPDATE {QUEUE_TABLE}
                 SET status = 'queued', execute_after = NOW(), updated = NOW(),
                     attempts = 0, queue_manager_id = NULL
               WHERE id = $1 AND status = 'failed'
           RETURNING id, entrypoint, priority)
            INSERT INTO {QUEUE_LOG_TABLE} (job_id, status, entrypoint, priority)
            SELECT id, 'queued', entrypoint, priority FROM requeued
            RETURNING job_id""",  # noqa: S608 - table names are constants
        job_id,
    )
    return row is not None  # the queue table's trigger NOTIFYs workers on commit


@dataclasses.dataclass(frozen=True)
class QueueStats:
    """Counts per orderly status and the age of the oldest due, unclaimed job."""

    counts: dict[JobStatus, int]
    oldest_due_age_seconds: float

    @property
    def waiting(self) -> int:
        """Jobs that still have to run (queued or waiting for a retry)."""
        return self.counts[JobStatus.queued] + self.counts[JobStatus.failed]


_STATUS_COUNTS = ", ".join(
    f"count(*) FILTER (WHERE {where}) AS {status.value}" for status, where in _STATUS_FILTER.items()
)


async def queue_stats(tx: Tx) -> QueueStats:
    """One cheap aggregate over the queue table (it only holds unfinished jobs)."""
    row = await tx.fetchrow(
        f"""SELECT {_STATUS_COUNTS},
              COALESCE(EXTRACT(EPOCH FROM NOW() - min(execute_after)
                       FILTER (WHERE status = 'queued' AND execute_after <= NOW())), 0)
                AS oldest
            FROM {QUEUE_TABLE} j"""  # noqa: S608 - table name and fragments are constants
    )
    assert row is not None
    return QueueStats(
        counts={status: int(row[status.value]) for status in JobStatus},
        oldest_due_age_seconds=float(row["oldest"]),
    )


# ---------------------------------------------------------------- worker


@dataclasses.dataclass
class _TaskExecutor(EntrypointExecutor):
    """Runs one task attempt: tx, timeout, span, log context, metrics, retry decision."""

    task: Task = dataclasses.field(kw_only=True)
    database: Database = dataclasses.field(kw_only=True)
    resources: Mapping[type[Any], Any] = dataclasses.field(kw_only=True)

    async def execute(self, job: pgq_models.Job, context: pgq_models.Context) -> None:
        attempt = job.attempts + 1
        headers = job.headers or {}
        started = time.perf_counter()
        with (
            bound_context(
                job_id=job.id,
                task=self.task.name,
                attempt=attempt,
                request_id=headers.get("request_id"),
            ),
            tracer().start_as_current_span(
                f"job {self.task.name}",
                attributes={"job.id": job.id, "job.attempt": attempt},
            ),
        ):
            try:
                payload = orjson.loads(job.payload) if job.payload else {}
                async with asyncio.timeout(self.task.timeout), self.database.transaction() as tx:
                    ctx = JobContext(
                        tx=tx, job_id=job.id, attempt=attempt, resources=self.resources
                    )
                    await self.task.handler(ctx, payload)
                    await tx.commit()
            except Exception as exc:
                JOB_DURATION.labels(self.task.name).observe(time.perf_counter() - started)
                reason = _describe(exc)
                if attempt >= self.task.retry.max_attempts:
                    JOB_OUTCOMES.labels(self.task.name, "dead").inc()
                    log.error("job_dead", error=reason)
                    raise
                delay = self.task.retry.delay(attempt)
                if _database_lost(exc):
                    # PgQueuer records the retry in the database: while it is away that
                    # write fails and the job would end as an exception, never re-run.
                    # Hold the job (its heartbeat goes on) until the database answers.
                    await _until_reachable(self.database)
                JOB_OUTCOMES.labels(self.task.name, "retried").inc()
                log.warning("job_retry", error=reason, delay_seconds=delay.total_seconds())
                raise pgq_errors.RetryRequested(delay=delay, reason=reason) from exc
            JOB_DURATION.labels(self.task.name).observe(time.perf_counter() - started)
            JOB_OUTCOMES.labels(self.task.name, "succeeded").inc()
            log.debug("job_succeeded")


_CONNECTION_ERRORS = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, cannot connect now
    asyncpg.exceptions.ProtocolViolationError,  # PgBouncer: "server login has been failing"
    OSError,
    errors.Overloaded,  # no pooled connection within the acquire timeout
)


def _database_lost(exc: BaseException) -> bool:
    """Whether *exc* (or what caused it) says the database connection went away."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, _CONNECTION_ERRORS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


async def _until_reachable(database: Database, *, within: float = 120.0) -> None:
    """Wait (bounded) until *database* answers a trivial query again."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            await database.ping(within_seconds=2.0)
            return
        except Exception:  # noqa: BLE001 - still away: try again shortly
            await asyncio.sleep(0.5)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:500]


@dataclasses.dataclass
class WorkerOptions:
    """Tuning for one worker process."""

    batch_size: int = 20
    concurrency: int = 50
    heartbeat_timeout: timedelta = timedelta(seconds=30)


class Worker:
    """A PgQueuer queue manager (and scheduler) running orderly tasks."""

    def __init__(
        self,
        database: Database,
        tasks: Sequence[Task],
        *,
        options: WorkerOptions | None = None,
        resources: Mapping[type[Any], Any] | None = None,
    ) -> None:
        self.database = database
        self.tasks = list(tasks)
        self.options = options or WorkerOptions()
        self.resources = dict(resources or {})
        self._pgq: PgQueuer | None = None
        self._pool: asyncpg.Pool | None = None
        self.started = asyncio.Event()

    def _register(self, pgq: PgQueuer) -> None:
        for item in self.tasks:

            def factory(params: EntrypointExecutorParameters, item: Task = item) -> _TaskExecutor:
                return _TaskExecutor(
                    params, task=item, database=self.database, resources=self.resources
                )

            async def unused(_: pgq_models.Job) -> None:  # executor calls the task itself
                return None

            pgq.entrypoint(item.name, on_failure="hold", executor_factory=factory)(unused)
            if item.schedule:
                pgq.schedule(f"{item.name}:schedule", item.schedule)(self._scheduled(item))

    def _scheduled(self, item: Task) -> Callable[[pgq_models.Schedule], Awaitable[None]]:
        async def run(_: pgq_models.Schedule) -> None:
            # The scheduler only enqueues: execution, retries and dead-lettering stay uniform.
            async with self.database.transaction() as tx:
                await enqueue(tx, item.name, {}, dedupe_key=f"schedule:{item.name}")
                await tx.commit()

        return run

    async def run(self) -> None:
        """Process jobs until :meth:`stop`; in-flight jobs finish before this returns."""
        self._pool = await asyncpg.create_pool(self.database.direct_url, min_size=1, max_size=4)
        try:
            self._pgq = PgQueuer(AsyncpgPoolDriver(self._pool))
            self._register(self._pgq)
            self.started.set()
            log.info("worker_started", tasks=[t.name for t in self.tasks])
            await self._pgq.run(
                batch_size=self.options.batch_size,
                max_concurrent_tasks=max(self.options.concurrency, 2 * self.options.batch_size),
                heartbeat_timeout=self.options.heartbeat_timeout,
                # NOTIFY wakes the worker for new jobs; this bounds how late a retry
                # whose wake-up was missed can start.
                dequeue_timeout=timedelta(seconds=1),
            )
        finally:
            await self._pool.close()
            await self._close_resources()
            log.info("worker_stopped")

    async def _close_resources(self) -> None:
        """Close resources that hold connections (HTTP clients), once no job runs."""
        for resource in self.resources.values():
            closer = getattr(resource, "aclose", None)
            if closer is not None and asyncio.iscoroutinefunction(closer):
                try:
                    await closer()
                except Exception as exc:  # noqa: BLE001 - shutdown goes on for the others
                    log.warning(
                        "resource_close_failed",
                        resource=type(resource).__name__,
                        error=type(exc).__name__,
                    )

    def stop(self) -> None:
        """Stop fetching new jobs; running jobs finish (or are re-picked after a crash)."""
        if self._pgq is not None:
            self._pgq.shutdown.set()


class QueueDepthMonitor:
    """A cheap, near-exact view of how many jobs wait, for load shedding on hot paths.

    The database count is refreshed at most every ``refresh_seconds``, by one
    caller at a time on *its own* transaction (a request holding a connection
    must never wait for a second one: under load that deadlocks the pool);
    everyone else reads the cached count meanwhile. Jobs this process enqueued
    since are added locally, so a burst cannot overshoot the limit while the
    cached count is stale.
    """

    def __init__(self, *, refresh_seconds: float = 1.0) -> None:
        self.refresh_seconds = refresh_seconds
        self._count = 0
        self._local = 0
        self._fetched_at = float("-inf")
        self._refreshing = False

    def note_enqueued(self, jobs: int = 1) -> None:
        """Account for jobs this process just committed."""
        self._local += jobs

    async def depth(self, tx: Tx) -> int:
        """Jobs waiting to run (queued or waiting for a retry), at most a second old."""
        if not self._refreshing and time.monotonic() - self._fetched_at >= self.refresh_seconds:
            self._refreshing = True
            try:
                stats = await queue_stats(tx)
                self._count, self._local = stats.waiting, 0
                self._fetched_at = time.monotonic()
            finally:
                self._refreshing = False
        return self._count + self._local
