"""Child processes of the benchmark: start, wait until ready, sample memory, stop.

Every process the benchmark starts is tracked by a :class:`ProcessGroup` and
stopped (SIGTERM, then SIGKILL) when the run ends, whatever happened.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

import httpx
import psutil  # type: ignore[import-untyped]

HOST = "127.0.0.1"


def free_port() -> int:
    """A currently free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The current environment without any ``ORDERLY_*`` variable, plus *extra*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERLY_")}
    env.update(extra)
    return env


class ProcessGroup:
    """Owns the benchmark's child processes and their log files."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._procs: list[tuple[subprocess.Popen[bytes], IO[bytes]]] = []

    def start(
        self,
        name: str,
        args: Sequence[str],
        env: Mapping[str, str],
        cwd: Path | None = None,
        stdout_pipe: bool = False,
    ) -> subprocess.Popen[bytes]:
        """Start ``python -m ...`` style *args*; stderr (and stdout) go to ``<name>.log``."""
        log = (self.log_dir / f"{name}.log").open("wb")
        proc = subprocess.Popen(  # our own interpreter and arguments
            [sys.executable, *args],
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout_pipe else log,
            stderr=log,
        )
        self._procs.append((proc, log))
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> int | None:
        """SIGTERM, wait up to *timeout*, then SIGKILL; returns the exit code."""
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for entry in list(self._procs):
            if entry[0] is proc:
                entry[1].close()
                self._procs.remove(entry)
        return proc.returncode

    def stop_all(self) -> None:
        """Stop every process still tracked."""
        for proc, _ in list(self._procs):
            self.stop(proc, timeout=10)

    def log_tail(self, name: str, lines: int = 15) -> str:
        """The last lines of a process's log, for error messages."""
        path = self.log_dir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def wait_http(
    url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0, interval: float = 0.02
) -> float:
    """Seconds until *url* answered 200; raises if the process exits or time runs out."""
    started = time.monotonic()
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() - started < timeout:
            if proc.poll() is not None:
                raise RuntimeError(f"process exited with {proc.returncode} before {url} was ready")
            with contextlib.suppress(httpx.TransportError):
                if client.get(url).status_code == 200:
                    return time.monotonic() - started
            time.sleep(interval)
    raise RuntimeError(f"{url} not ready after {timeout:.0f} s")


class RssSampler:
    """Samples a process's resident memory in a thread; keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self.samples = 0
        self.cpu_seconds = 0.0  # CPU the process used during the last `running()` block
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                rss = int(self.process.memory_info().rss)
            except psutil.Error:
                return
            self.peak = max(self.peak, rss)
            self.samples += 1
            self._stop.wait(self.interval)

    def current(self) -> int:
        """Resident memory now, in bytes."""
        return int(self.process.memory_info().rss)

    @contextlib.contextmanager
    def running(self) -> Iterator[RssSampler]:
        """Sample while the block runs."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        before = self._cpu()
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(2)
            self.cpu_seconds = self._cpu() - before

    def _cpu(self) -> float:
        times = self.process.cpu_times()
        return float(times.user + times.system)
