"""The raw PostgreSQL ceiling: pgbench running the order transaction, ``-M prepared``."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.loadgen import percentile


def pgbench_binary() -> str:
    """pgbench from PATH, else the one the ``pgserver`` wheel ships."""
    found = shutil.which("pgbench")
    if found:
        return found
    try:
        import pgserver  # noqa: F401 - only to locate the wheel
    except ImportError as exc:  # pragma: no cover - pgserver is a dependency
        raise RuntimeError("pgbench not found") from exc
    import importlib.util

    spec = importlib.util.find_spec("pgserver")
    if spec is None or spec.origin is None:
        raise RuntimeError("pgbench not found")
    candidate = Path(spec.origin).parent / "pginstall" / "bin" / "pgbench"
    if not candidate.exists():
        raise RuntimeError("pgbench not found (neither on PATH nor in the pgserver wheel)")
    return str(candidate)


@dataclass
class PgbenchResult:
    """TPS and latency percentiles of one pgbench run."""

    binary: str
    clients: int
    threads: int
    duration_s: float
    transactions: int
    tps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    failed: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly view."""
        return {
            "binary": self.binary,
            "clients": self.clients,
            "threads": self.threads,
            "duration_s": self.duration_s,
            "transactions": self.transactions,
            "tps": round(self.tps, 1),
            "p50_ms": round(self.p50_ms, 3),
            "p95_ms": round(self.p95_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "failed": self.failed,
        }


_TPS = re.compile(r"^tps = ([\d.]+) \(without initial connection time\)", re.MULTILINE)
_FAILED = re.compile(r"^number of failed transactions: (\d+)", re.MULTILINE)


def run_pgbench(
    url: str, script: str, *, clients: int, threads: int, duration: float
) -> PgbenchResult:
    """Run *script* for *duration* seconds; latencies come from pgbench's per-transaction log."""
    binary = pgbench_binary()
    seconds = max(1, round(duration))
    with tempfile.TemporaryDirectory(prefix="orderly-pgbench-") as tmp:
        script_path = Path(tmp) / "order.sql"
        script_path.write_text(script, encoding="utf-8")
        command = [
            binary,
            "-n",  # no vacuum of pgbench's own tables: there are none
            "-M",
            "prepared",
            "-c",
            str(clients),
            "-j",
            str(max(1, min(threads, clients))),
            "-T",
            str(seconds),
            "-f",
            str(script_path),
            "-l",
            f"--log-prefix={tmp}/tx",
            url,
        ]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=seconds + 120, check=False, cwd=tmp
        )
        output = done.stdout + done.stderr
        tps = _TPS.search(output)
        if done.returncode not in (0,) or tps is None:
            raise RuntimeError(f"pgbench failed ({done.returncode}): {output.strip()[-600:]}")
        latencies: list[float] = []
        for log in Path(tmp).glob("tx.*"):
            for line in log.read_text().splitlines():
                fields = line.split()
                if len(fields) >= 3 and fields[2].isdigit():
                    latencies.append(int(fields[2]) / 1000)
    latencies.sort()
    failed = _FAILED.search(output)
    return PgbenchResult(
        binary=binary,
        clients=clients,
        threads=max(1, min(threads, clients)),
        duration_s=seconds,
        transactions=len(latencies),
        tps=float(tps.group(1)),
        p50_ms=percentile(latencies, 50),
        p95_ms=percentile(latencies, 95),
        p99_ms=percentile(latencies, 99),
        failed=int(failed.group(1)) if failed else 0,
    )
