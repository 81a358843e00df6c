"""Job drain: N no-op jobs enqueued at once, drained by one worker process.

The worker process is orderly's own :class:`~orderly.core.jobs.Worker` (tx
per job, retries, metrics, logging — all of it) with one extra task,
``bench.noop``, registered only here. Its batch size and concurrency are the
product defaults from Settings unless given.

Run the worker alone: ``python -m benchmarks.drain URL --batch-size 20 --concurrency 50``;
it prints ``READY`` once it listens for jobs and stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg

NOOP_TASK = "bench.noop"
ENQUEUE_BATCH = 5_000


@dataclass
class DrainResult:
    """How fast one worker process emptied the queue."""

    jobs: int
    seconds: float
    batch_size: int
    concurrency: int

    @property
    def jobs_per_s(self) -> float:
        """Jobs finished per second."""
        return self.jobs / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly view."""
        return {
            "jobs": self.jobs,
            "seconds": round(self.seconds, 3),
            "jobs_per_s": round(self.jobs_per_s, 1),
            "batch_size": self.batch_size,
            "concurrency": self.concurrency,
        }


async def enqueue_noops(url: str, count: int) -> None:
    """Insert *count* no-op jobs with PgQueuer's own enqueue statement, in one transaction."""
    from orderly.core.jobs import _ENQUEUE_SQL

    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            done = 0
            while done < count:
                n = min(ENQUEUE_BATCH, count - done)
                await conn.fetch(
                    _ENQUEUE_SQL,
                    [0] * n,
                    [NOOP_TASK] * n,
                    [b"{}"] * n,
                    [timedelta(0)] * n,
                    [None] * n,
                    ["{}"] * n,
                )
                done += n
    finally:
        await conn.close()


async def wait_empty(url: str, limit_s: float, poll: float = 0.05) -> float:
    """Seconds until no job of ours is left in the queue table (at most *limit_s*)."""
    from orderly.core.jobs import QUEUE_TABLE

    conn = await asyncpg.connect(url)
    started = time.perf_counter()
    try:
        while time.perf_counter() - started < limit_s:
            left = await conn.fetchval(
                f"SELECT count(*) FROM {QUEUE_TABLE} WHERE entrypoint = $1", NOOP_TASK
            )
            if left == 0:
                return time.perf_counter() - started
            await asyncio.sleep(poll)
    finally:
        await conn.close()
    raise RuntimeError(f"jobs still queued after {limit_s:.0f} s")


async def _worker_main(url: str, batch_size: int, concurrency: int) -> None:
    from orderly.core.db import Database
    from orderly.core.jobs import JobContext, Task, Worker, WorkerOptions

    async def noop(ctx: JobContext, payload: dict[str, Any]) -> None:
        return None

    database = Database(url, pool_size=4, application_name="orderly-bench-worker")
    worker = Worker(
        database,
        [Task(NOOP_TASK, noop)],
        options=WorkerOptions(batch_size=batch_size, concurrency=concurrency),
    )
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, worker.stop)
    loop.add_signal_handler(signal.SIGINT, worker.stop)
    running = asyncio.create_task(worker.run())
    await worker.started.wait()
    await asyncio.sleep(0.3)  # PgQueuer LISTENs right after `started`
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    try:
        await running
    finally:
        await database.dispose()


def main() -> None:
    """The worker process of the drain benchmark."""
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args()
    from orderly.core.telemetry import configure_logging

    configure_logging(args.log_level, json=True)
    asyncio.run(_worker_main(args.url, args.batch_size, args.concurrency))


if __name__ == "__main__":
    main()
