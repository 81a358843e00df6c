"""`orderly worker` for real: runs jobs at low CPU priority, serves metrics, stops on SIGTERM."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from orderly.core.db import Database
from orderly.core.jobs import enqueue
from orderly.core.maintenance import PRUNE_JOB_LOG
from tests.test_serve import free_port


async def test_worker_runs_a_job_serves_metrics_and_exits_0_on_sigterm(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    async with database.transaction() as tx:
        await enqueue(tx, PRUNE_JOB_LOG, {"retention_days": 30})
        await tx.commit()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERLY_")}
    env.update(
        {
            "ORDERLY_DATABASE_URL": database_url,
            "ORDERLY_WORKER_METRICS_PORT": str(port),
            "ORDERLY_JWT_SECRET": secrets.token_urlsafe(48),
            "ORDERLY_ENCRYPTION_KEYS": secrets.token_urlsafe(32),
            "ORDERLY_DATA_DIR": str(tmp_path),
        }
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "orderly", "worker"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        body = ""
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1).text
            except httpx.TransportError:
                body = ""
            if 'orderly_job_outcomes_total{outcome="succeeded",task="jobs.prune_log"}' in body:
                break
            time.sleep(0.1)
        assert 'orderly_job_outcomes_total{outcome="succeeded",task="jobs.prune_log"} 1.0' in body
        # ORDERLY_WORKER_NICE (default 10): jobs yield a saturated CPU to requests.
        assert os.getpriority(os.PRIO_PROCESS, proc.pid) == min(19, os.nice(0) + 10)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        proc.kill()
