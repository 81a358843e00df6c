"""The README's first command, for real: `orderly serve` on the embedded PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> float:
    """Seconds until /readyz answered 200."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        assert proc.poll() is None, "orderly serve exited early"
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("orderly serve did not become ready")


def test_serve_on_embedded_postgres_then_drain_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERLY_")}
    env.update({"ORDERLY_PORT": str(port), "ORDERLY_SHUTDOWN_GRACE_SECONDS": "1.5"})
    stdout = (tmp_path / "stdout.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "orderly", "serve"],
        cwd=tmp_path,
        env=env,
        stdout=stdout,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc)
        response = httpx.get(f"{base}/livez", headers={"X-Request-ID": "e2e-request-0001"})
        assert response.headers["x-request-id"] == "e2e-request-0001"
        assert httpx.get(f"{base}/metrics").status_code == 200

        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        draining = httpx.get(f"{base}/readyz", timeout=2)
        assert draining.status_code == 503
        assert draining.json()["status"] == "draining"
        assert proc.wait(30) == 0
    finally:
        proc.kill()
        stdout.close()

    assert (tmp_path / ".orderly" / "pg" / "PG_VERSION").exists()
    assert (tmp_path / ".orderly" / "secrets.json").stat().st_mode & 0o077 == 0
    banner = proc.stderr.read().decode() if proc.stderr else ""
    assert f"http://127.0.0.1:{port}" in banner
    assert "embedded PostgreSQL" in banner

    events = [json.loads(line) for line in (tmp_path / "stdout.log").read_text().splitlines()]
    request_lines = [e for e in events if e.get("request_id") == "e2e-request-0001"]
    assert request_lines
    assert request_lines[0]["event"] == "request"
    assert request_lines[0]["route"] == "/livez"
    assert request_lines[0]["status"] == 200
