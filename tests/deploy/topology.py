"""The production topology as processes: private PostgreSQL, PgBouncer, HAProxy, APIs, workers.

Used by tests/deploy/test_topology.py. PostgreSQL is a cluster of the test's own
(``initdb`` + ``pg_ctl`` from Debian's ``/usr/lib/postgresql/<major>/bin``, in a
temporary directory, on a free port), because the fault drill restarts it: the
machine's shared server is never touched. PostgreSQL and PgBouncer refuse to run
as root, so as root (CI) they run as the ``postgres`` user.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pg_bin() -> Path | None:
    """Debian's newest PostgreSQL server binaries, if installed."""
    dirs = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    return dirs[-1].parent if dirs else None


def missing_tools() -> list[str]:
    """What the topology needs and this machine lacks (.ci/run installs it)."""
    missing = [name for name in ("haproxy", "pgbouncer") if shutil.which(name) is None]
    if pg_bin() is None:
        missing.append("postgresql server binaries")
    return missing


def _as_service_user() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def wait_for(check: object, timeout: float, what: str) -> None:
    """Poll *check* (a callable returning truthy) until it holds, else fail naming *what*."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except (OSError, httpx.HTTPError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def answers(url: str, status: int = 200) -> bool:
    """Whether GET *url* answers *status*."""
    return httpx.get(url, timeout=1).status_code == status


@dataclass
class Topology:
    """Every process of the topology, started and stopped together."""

    redis_url: str
    smtp_url: str
    secrets: dict[str, str]
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="orderly-topo-")))
    pg_port: int = field(default_factory=free_port)
    bouncer_port: int = field(default_factory=free_port)
    lb_port: int = field(default_factory=free_port)
    api_ports: list[int] = field(default_factory=lambda: [free_port(), free_port()])
    apis: list[subprocess.Popen[bytes] | None] = field(default_factory=lambda: [None, None])
    workers: list[subprocess.Popen[bytes] | None] = field(default_factory=lambda: [None, None])
    others: list[subprocess.Popen[bytes]] = field(default_factory=list)
    restarts: dict[str, int] = field(default_factory=dict)
    failed: bool = False

    db = "orderly"

    @property
    def pg_dir(self) -> Path:
        """PostgreSQL's and PgBouncer's directory (owned by the service user)."""
        return self.root / "pg"

    @property
    def direct_url(self) -> str:
        """PostgreSQL itself (sessions: LISTEN/NOTIFY, migrations)."""
        return f"postgresql://postgres@127.0.0.1:{self.pg_port}/{self.db}"

    @property
    def pooled_url(self) -> str:
        """Through PgBouncer (transaction pooling)."""
        return f"postgresql://postgres@127.0.0.1:{self.bouncer_port}/{self.db}"

    @property
    def base_url(self) -> str:
        """HAProxy's frontend."""
        return f"http://127.0.0.1:{self.lb_port}"

    def env(self, **extra: str) -> dict[str, str]:
        """The ``orderly`` processes' environment."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERLY_")}
        env.update(
            ORDERLY_DATABASE_URL=self.pooled_url,
            ORDERLY_DATABASE_DIRECT_URL=self.direct_url,
            ORDERLY_REDIS_URL=self.redis_url,
            ORDERLY_SMTP_URL=self.smtp_url,
            ORDERLY_DATA_DIR=str(self.root / "data"),
            ORDERLY_LOG_LEVEL="WARNING",
            ORDERLY_SHUTDOWN_GRACE_SECONDS="2",
            ORDERLY_JOB_HEARTBEAT_TIMEOUT_SECONDS="5",
            ORDERLY_WORKER_METRICS_PORT="0",
            ORDERLY_ORDER_RATE_LIMIT="100000/minute",
            ORDERLY_PASSWORD_HASH_TIME_COST="1",
            ORDERLY_PASSWORD_HASH_MEMORY_KIB="8192",
            **self.secrets,
        )
        env.update(extra)
        return env

    # ------------------------------------------------------------ PostgreSQL

    def _pg(self, *args: str) -> None:
        binary = pg_bin()
        assert binary is not None
        subprocess.run(
            [*_as_service_user(), str(binary / args[0]), *args[1:]],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start_postgres(self) -> None:
        """initdb a private cluster and start it on its own port."""
        os.chmod(self.root, 0o755)  # noqa: S103 - the service user must traverse it
        self.pg_dir.mkdir(mode=0o700)  # data, log, socket, PgBouncer's files: the service user's
        if os.geteuid() == 0:
            shutil.chown(self.pg_dir, "postgres", "postgres")
        pgdata = self.pg_dir / "data"
        self._pg("initdb", "-D", str(pgdata), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self.pg_ctl("start")
        self._pg("createdb", "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "postgres", self.db)

    def pg_ctl(self, action: str) -> None:
        """``pg_ctl start|restart|stop`` on the private cluster (fast shutdown)."""
        options = f"-p {self.pg_port} -c listen_addresses=127.0.0.1 -k {self.pg_dir}"
        self._pg(
            "pg_ctl",
            action,
            "-D",
            str(self.pg_dir / "data"),
            "-l",
            str(self.pg_dir / "postgres.log"),
            "-o",
            options,
            "-m",
            "fast",
            "-w",
            "-t",
            "30",
        )

    # ------------------------------------------------------------ PgBouncer and HAProxy

    def start_pgbouncer(self) -> None:
        """PgBouncer from deploy/pgbouncer.ini, transaction pooling."""
        userlist = self.root / "userlist.txt"
        userlist.write_text('"postgres" ""\n')
        ini = self.root / "pgbouncer.ini"
        ini.write_text(
            string.Template((DEPLOY / "pgbouncer.ini").read_text()).substitute(
                DB_NAME=self.db,
                PG_HOST="127.0.0.1",
                PG_PORT=self.pg_port,
                LISTEN_ADDR="127.0.0.1",
                LISTEN_PORT=self.bouncer_port,
                AUTH_TYPE="trust",
                AUTH_FILE=userlist,
                LOGFILE=self.pg_dir / "pgbouncer.log",
                PIDFILE=self.pg_dir / "pgbouncer.pid",
            )
        )
        user = ["-u", "postgres"] if os.geteuid() == 0 else []
        self.others.append(self._spawn("pgbouncer", ["pgbouncer", *user, str(ini)]))
        wait_for(lambda: _connects(self.bouncer_port), 15, "PgBouncer")

    def start_haproxy(self) -> None:
        """HAProxy from deploy/haproxy.cfg (its ${...} are environment variables)."""
        env = dict(os.environ)
        env.update(
            ORDERLY_LB_BIND=f"127.0.0.1:{self.lb_port}",
            ORDERLY_API_1=f"127.0.0.1:{self.api_ports[0]}",
            ORDERLY_API_2=f"127.0.0.1:{self.api_ports[1]}",
        )
        check = subprocess.run(
            ["haproxy", "-c", "-f", str(DEPLOY / "haproxy.cfg")],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert check.returncode == 0, check.stdout + check.stderr
        self.others.append(
            self._spawn("haproxy", ["haproxy", "-db", "-f", str(DEPLOY / "haproxy.cfg")], env)
        )
        wait_for(lambda: answers(f"{self.base_url}/readyz"), 20, "HAProxy")

    # ------------------------------------------------------------ orderly

    def _spawn(
        self, name: str, argv: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = (self.root / f"{name}.log").open("ab")
        return subprocess.Popen(
            argv,
            env=env,
            cwd=self.root,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def migrate(self) -> None:
        """``orderly migrate upgrade`` (it takes the direct URL)."""
        done = subprocess.run(
            [sys.executable, "-m", "orderly", "migrate", "upgrade"],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr

    def start_api(self, i: int) -> None:
        """``orderly api`` number *i*, until its /readyz answers 200."""
        port = self.api_ports[i]
        self.apis[i] = self._spawn(
            f"api{i}", [sys.executable, "-m", "orderly", "api"], self.env(ORDERLY_PORT=str(port))
        )
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/readyz"), 60, f"api {i}")

    def start_worker(self, i: int) -> None:
        """``orderly worker`` number *i*."""
        self.workers[i] = self._spawn(
            f"worker{i}", [sys.executable, "-m", "orderly", "worker"], self.env()
        )

    def supervise(self) -> None:
        """What systemd's Restart= does: start again a worker that exited (e.g. on a DB loss)."""
        for i, proc in enumerate(self.workers):
            if proc is not None and proc.poll() is not None:
                self.restarts[f"worker{i}"] = self.restarts.get(f"worker{i}", 0) + 1
                self.start_worker(i)

    def stop(self) -> None:
        """Stop everything and remove the directory."""
        for proc in [*self.apis, *self.workers, *self.others]:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in [*self.apis, *self.workers, *self.others]:
            if proc is not None:
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        if (self.pg_dir / "data" / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.CalledProcessError):
                self.pg_ctl("stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, name: str, lines: int = 30) -> str:
        """The end of one process's log."""
        path = self.root / f"{name}.log"
        return (
            "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            if path.exists()
            else ""
        )


def _connects(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
