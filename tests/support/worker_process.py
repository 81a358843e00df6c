"""A real worker process running the test tasks: ``python -m tests.support.worker_process URL``."""

from __future__ import annotations

import asyncio
import signal
import sys
from datetime import timedelta

from orderly.core.db import Database
from orderly.core.jobs import Worker, WorkerOptions
from orderly.core.telemetry import configure_logging
from tests.support.tasks import TEST_TASKS


async def main(url: str) -> None:
    """Run until SIGTERM (graceful) or SIGKILL (the test's crash)."""
    database = Database(url, pool_size=2)
    worker = Worker(
        database,
        TEST_TASKS,
        options=WorkerOptions(batch_size=5, concurrency=10, heartbeat_timeout=timedelta(seconds=2)),
    )
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, worker.stop)
    try:
        await worker.run()
    finally:
        await database.dispose()


if __name__ == "__main__":
    configure_logging("INFO")
    asyncio.run(main(sys.argv[1]))
