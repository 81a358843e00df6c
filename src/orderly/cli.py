"""The ``orderly`` command. Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, NoReturn

import typer
import uvicorn
import uvloop
from rich.console import Console

from orderly.config import ConfigError, Settings, load_settings, with_dev_secrets
from orderly.core.telemetry import configure_logging, get_logger
from orderly.errors import OrderlyError

app = typer.Typer(
    name="orderly",
    help="orderly: an order-processing backend on PostgreSQL.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
migrate_app = typer.Typer(help="Database migrations (Alembic).", no_args_is_help=True)
app.add_typer(migrate_app, name="migrate")
console = Console(stderr=True, soft_wrap=True)
log = get_logger("orderly.cli")


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one line to stderr and exit with *code*."""
    console.print(f"orderly: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@dataclass
class Runtime:
    """Settings plus the database URL in use (external, or the embedded server's)."""

    settings: Settings
    database_url: str
    stop: Callable[[], None]

    @property
    def direct_url(self) -> str | None:
        """``ORDERLY_DATABASE_DIRECT_URL``: a session of its own when the main URL is PgBouncer."""
        direct = self.settings.database_direct_url
        return direct.get_secret_value() if direct is not None else None

    @property
    def session_url(self) -> str:
        """The URL for whole-session work: migrations, backup, restore, audit verify."""
        return self.direct_url or self.database_url


def _settings(*, dev_secrets: bool = True) -> Settings:
    try:
        settings = load_settings()
    except ConfigError as exc:
        fail(str(exc), 2)
    configure_logging(settings.log_level, json=settings.log_json)
    return with_dev_secrets(settings) if dev_secrets else settings


@contextlib.contextmanager
def _runtime(*, dev_secrets: bool = True) -> Iterator[Runtime]:
    settings = _settings(dev_secrets=dev_secrets)
    if settings.database_url is not None:
        yield Runtime(settings, settings.database_url.get_secret_value(), lambda: None)
        return
    from orderly.core.embedded import EmbeddedPostgres

    try:
        embedded = EmbeddedPostgres(settings.data_dir)
    except Exception as exc:  # noqa: BLE001 - reported as one line, exit 1
        fail(f"cannot start the embedded PostgreSQL in {settings.data_dir}: {exc}")
    try:
        yield Runtime(settings, embedded.url, embedded.stop)
    finally:
        embedded.stop()


def _migrate_head(url: str) -> None:
    from orderly import migrate

    try:
        migrate.upgrade(url, "head")
    except Exception as exc:
        log.error("migration_failed", error_type=type(exc).__name__, exc_info=exc)
        summary = str(exc).splitlines()[0] if str(exc) else ""
        fail(f"migrations failed: {type(exc).__name__}: {summary}")


class _DrainingServer(uvicorn.Server):
    """uvicorn, with SIGTERM turning readiness 503 first and exiting 0 after the drain."""

    def __init__(self, config: uvicorn.Config, grace_seconds: float) -> None:
        super().__init__(config)
        self.grace_seconds = grace_seconds
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: Any = None) -> None:
        """Serve until a signal; remembers the loop so the handler can schedule the drain."""
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Mark the app draining, wait the grace period for load balancers, then stop."""
        fastapi_app: Any = self.config.app
        lifecycle = fastapi_app.state.lifecycle
        if lifecycle.draining or self._loop is None or self.grace_seconds <= 0:
            lifecycle.draining = True
            self.should_exit = True  # not re-raised after shutdown: exit code 0
            return
        lifecycle.draining = True
        log.info("draining", grace_seconds=self.grace_seconds, signal=sig)
        loop = self._loop
        loop.call_soon_threadsafe(
            loop.call_later, self.grace_seconds, setattr, self, "should_exit", True
        )


def _raise_fd_limit() -> int:
    """Raise the open-files soft limit to the hard limit (1,000 clients need > 1,024 fds)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 65_536)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft


def _serve(runtime: Runtime, *, run_worker: bool) -> None:
    from orderly.main import create_app

    settings = runtime.settings
    open_files = _raise_fd_limit()
    log.info("limits", open_files=open_files, pool_size=settings.db_pool_size)
    api = create_app(settings, database_url=runtime.database_url, run_worker=run_worker)
    config = uvicorn.Config(
        api,
        host=settings.host,
        port=settings.port,
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=30,
        timeout_keep_alive=5,
        # X-Forwarded-For only from ORDERLY_TRUSTED_PROXIES (uvicorn would trust 127.0.0.1).
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=list(settings.trusted_proxies),
        backlog=4096,  # a connection storm queues in the kernel, not refused
        loop="uvloop",
        http="httptools",
    )
    server = _DrainingServer(config, settings.shutdown_grace_seconds)
    # uvloop, as uvicorn's own runner would pick: asyncio.run() alone gives the stdlib loop.
    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        runner.run(server.serve())
    if server.started is False:
        fail(f"could not start the HTTP server on {settings.host}:{settings.port}")


@app.command()
def serve() -> None:
    """All in one: (embedded) PostgreSQL, migrations, API and a worker in one process."""
    with _runtime() as runtime:
        settings = runtime.settings
        _migrate_head(runtime.database_url)
        where = (
            f"embedded PostgreSQL in {(settings.data_dir / 'pg').resolve()}"
            if settings.embedded
            else "external PostgreSQL (ORDERLY_DATABASE_URL)"
        )
        console.print(
            f"orderly listening on http://{settings.host}:{settings.port}  "
            f"(docs /docs, data: {where})",
            markup=False,
            highlight=False,
        )
        _serve(runtime, run_worker=True)


@app.command()
def api() -> None:
    """The HTTP API only (production: run `orderly migrate upgrade` first)."""
    with _runtime() as runtime:
        _serve(runtime, run_worker=False)


@app.command()
def worker() -> None:
    """A job worker; SIGTERM finishes running jobs, then exits 0."""
    from orderly.core.db import Database
    from orderly.core.telemetry import configure_tracing, start_metrics_server
    from orderly.worker import build_worker

    with _runtime() as runtime:
        _raise_fd_limit()
        if runtime.settings.worker_nice:
            os.nice(runtime.settings.worker_nice)  # jobs yield the CPU to requests
        configure_tracing(runtime.settings.otlp_endpoint, service="orderly-worker")
        port = runtime.settings.worker_metrics_port
        if port:
            # Workers serve no HTTP API; Prometheus scrapes their job and ledger metrics here.
            start_metrics_server(runtime.settings.host, port)
            log.info("worker_metrics_listening", host=runtime.settings.host, port=port)

        async def main() -> None:
            database = Database(
                runtime.database_url,
                pool_size=runtime.settings.db_pool_size,
                application_name="orderly-worker",
                direct_url=runtime.direct_url,
            )
            job_worker = build_worker(runtime.settings, database)
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, job_worker.stop)
            try:
                await job_worker.run()
            finally:
                await database.dispose()

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main())


@migrate_app.command("upgrade")
def migrate_upgrade(
    revision: Annotated[str, typer.Argument(help="target revision")] = "head",
) -> None:
    """Apply migrations up to REVISION (default head)."""
    from orderly import migrate

    with _runtime(dev_secrets=False) as runtime:
        migrate.upgrade(runtime.session_url, revision)
        console.print(f"database at {migrate.current(runtime.session_url) or 'base'}")


@migrate_app.command("downgrade")
def migrate_downgrade(
    revision: Annotated[str, typer.Argument(help="target revision")],
    yes: Annotated[
        bool, typer.Option("--yes", help="do not ask (required without a terminal)")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="go on while other orderly processes are connected")
    ] = False,
) -> None:
    """Revert migrations down to REVISION (`base` removes every table); asks first.

    Refuses while other orderly processes are connected to the database (they
    would run on a schema older than their code), unless --force.
    """
    from orderly import migrate

    with _runtime(dev_secrets=False) as runtime:
        url = runtime.session_url
        name = migrate.database_name(url)
        if not yes:
            _confirm_downgrade(name, revision)
        if not force:
            sessions = asyncio.run(migrate.orderly_sessions(url))
            if sessions:
                listed = ", ".join(f"{app} x{count}" for app, count in sessions.items())
                fail(
                    f"not downgrading {name}: {sum(sessions.values())} other orderly "
                    f"session(s) connected ({listed}); stop those processes or pass --force"
                )
        migrate.downgrade(url, revision)
        console.print(f"database at {migrate.current(url) or 'base'}")


def _confirm_downgrade(database: str, revision: str) -> None:
    """Ask on the terminal; without one, refuse (a script must say --yes)."""
    if not sys.stdin.isatty():
        fail(
            "migrate downgrade drops what later migrations added, data included: "
            "pass --yes to confirm (no terminal to ask on)"
        )
    console.print(
        f"This reverts database {database} to {revision}: tables and columns added by later "
        "migrations are dropped with their data.",
        markup=False,
        highlight=False,
    )
    console.print(
        f'Type the database name ({database}) or "downgrade" to go on: ',
        end="",
        markup=False,
        highlight=False,
    )
    answer = sys.stdin.readline().strip()
    if answer not in {database, "downgrade"}:
        fail("downgrade not confirmed; nothing changed")


@migrate_app.command("current")
def migrate_current() -> None:
    """Print the database's current revision."""
    from orderly import migrate

    with _runtime(dev_secrets=False) as runtime:
        print(migrate.current(runtime.session_url) or "base")


# ---------------------------------------------------------------- accounts and audit

user_app = typer.Typer(help="User accounts.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit trail.", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(audit_app, name="audit")


@user_app.command("create")
def user_create(
    email: Annotated[str, typer.Option(help="e-mail address (login)")],
    role: Annotated[str, typer.Option(help="customer, staff or admin")] = "customer",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the password from standard input")
    ] = False,
    name: Annotated[str | None, typer.Option(help="display name")] = None,
) -> None:
    """Create an account with any role (bootstrap an admin); the password comes from stdin."""
    from orderly.accounts.schemas import Role

    if not password_stdin:
        fail("pass --password-stdin and pipe the password in (never on the command line)", 2)
    if role not in {r.value for r in Role}:
        fail(f"--role must be one of customer, staff, admin (got {role!r})", 2)
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        fail("no password on standard input", 2)
    with _runtime() as runtime:
        if runtime.settings.embedded:
            _migrate_head(runtime.database_url)
        from orderly.accounts.cli import create_user

        try:
            user_id = asyncio.run(
                create_user(
                    runtime.settings,
                    runtime.session_url,
                    email=email,
                    role=Role(role),
                    password=password,
                    name=name,
                )
            )
        except OrderlyError as exc:
            fail(f"cannot create the user: {exc.detail}")
        console.print(f"created {role} {user_id}", markup=False, highlight=False)


@app.command()
def demo() -> None:
    """Load a small sample shop (accounts with printed passwords, products, orders)."""
    from orderly import demo as sample

    with _runtime() as runtime:
        _migrate_head(runtime.database_url)
        try:
            shop = asyncio.run(sample.load(runtime.settings, runtime.database_url))
        except OrderlyError as exc:
            fail(f"cannot load the demo shop (already loaded?): {exc.detail}")
    print(f"demo shop loaded: {shop.products} products, {shop.orders} orders")
    for account in shop.accounts:
        print(f"  {account.role.value:<8} {account.email}  password: {account.password}")
    print("start it with `orderly serve` (or `./dev serve`); sign in at /docs or /console")


@audit_app.command("verify")
def audit_verify() -> None:
    """Check the audit hash chain and the ledger invariants; exit 1 naming what is broken."""
    from orderly.audit.cli import verify
    from orderly.ledger import cli as ledger_cli

    with _runtime(dev_secrets=False) as runtime:
        report = asyncio.run(verify(runtime.session_url))
        ledger = asyncio.run(ledger_cli.verify(runtime.session_url))
    problems: list[str] = []
    if report.ok:
        print(f"audit chain intact: {report.checked} events")
    else:
        problems.append(
            f"audit chain broken at event {report.broken_event_id} (seq {report.broken_seq}): "
            f"{report.reason}; {report.checked} events before it are intact"
        )
    if ledger.ok:
        print("ledger balanced: every transaction and currency sums to zero")
    else:
        problems.extend(ledger_cli.describe(ledger))
    for line in problems[:-1]:
        console.print(f"orderly: {line}", markup=False, highlight=False)
    if problems:
        fail(problems[-1])


# ---------------------------------------------------------------- backup and restore


@app.command("backup")
def backup_command(path: Annotated[Path, typer.Argument(help="backup file to write")]) -> None:
    """A consistent dump (custom format) plus a manifest, in one file (src/orderly/backup.py)."""
    from orderly import backup

    with _runtime(dev_secrets=False) as runtime:
        try:
            manifest = asyncio.run(
                backup.backup(runtime.session_url, path, progress=backup.stderr_progress)
            )
        except backup.BackupError as exc:
            fail(str(exc))
    rows = sum(manifest["row_counts"].values())
    print(f"backup written to {path}: {rows} rows, revision {manifest['schema_revision']}")


@app.command("restore")
def restore_command(
    path: Annotated[Path, typer.Argument(help="backup file written by `orderly backup`")],
    force: Annotated[
        bool, typer.Option("--force", help="replace a database that already has tables")
    ] = False,
) -> None:
    """Restore into an empty database, check the manifest, then run `audit verify`."""
    from orderly import backup

    with _runtime(dev_secrets=False) as runtime:
        try:
            asyncio.run(
                backup.restore(
                    runtime.session_url, path, force=force, progress=backup.stderr_progress
                )
            )
        except backup.BackupError as exc:
            fail(str(exc))
    print(f"restored {path}; manifest matches")
    audit_verify()


# ---------------------------------------------------------------- benchmark


def _bench_runner() -> Any:
    """``benchmarks.runner`` from the source checkout (the benchmark is not part of the wheel)."""
    import importlib

    for root in (Path(__file__).resolve().parents[2], Path.cwd()):
        if (root / "benchmarks" / "runner.py").exists() and str(root) not in sys.path:
            sys.path.insert(0, str(root))
            break
    try:
        return importlib.import_module("benchmarks.runner")
    except ImportError as exc:
        fail(f"`orderly bench` runs from a source checkout with benchmarks/ ({exc})", 2)


@app.command()
def bench(
    duration: Annotated[float, typer.Option(help="seconds of each measured pass")] = 10.0,
    warmup: Annotated[float, typer.Option(help="seconds of warm-up before each pass")] = 2.0,
    connections: Annotated[int, typer.Option(help="HTTP keep-alive connections")] = 32,
    pgbench_clients: Annotated[int, typer.Option(help="pgbench clients")] = 8,
    jobs: Annotated[int, typer.Option(help="no-op jobs for the drain")] = 20_000,
    products: Annotated[int, typer.Option(help="products orders pick from")] = 100,
    users: Annotated[int, typer.Option(help="customers placing orders")] = 8,
    loadgen: Annotated[str, typer.Option(help="auto (wrk if installed), wrk or python")] = "auto",
    phases: Annotated[
        str, typer.Option(help="comma-separated: pgbench,orders,products,jobs,serve,flags")
    ] = "pgbench,orders,products,jobs,serve,flags",
    database_url: Annotated[
        str | None,
        typer.Option(
            help="PostgreSQL for scratch databases (CREATEDB); default ORDERLY_DATABASE_URL, "
            "else a throwaway embedded server"
        ),
    ] = None,
    idempotency: Annotated[
        bool, typer.Option(help="send an Idempotency-Key with every order")
    ] = True,
    log_level: Annotated[str, typer.Option(help="the API server's log level")] = "INFO",
    keep_workdir: Annotated[bool, typer.Option(help="keep logs and scripts")] = False,
    with_worker: Annotated[
        bool, typer.Option(help="run `orderly worker` in its own process during HTTP passes")
    ] = False,
    json_path: Annotated[Path | None, typer.Option("--json", help="also write JSON here")] = None,
) -> None:
    """Load benchmark (PRODUCT.md §9): pgbench ceiling, orders, product reads, jobs, start-up."""
    settings = _settings(dev_secrets=False)
    runner = _bench_runner()
    if loadgen not in {"auto", "wrk", "python"}:
        fail("--loadgen must be auto, wrk or python", 2)
    url = database_url or (
        settings.database_url.get_secret_value() if settings.database_url else None
    )
    config = runner.BenchConfig(
        duration=duration,
        warmup=warmup,
        connections=connections,
        pgbench_clients=pgbench_clients,
        jobs=jobs,
        products=max(1, products),
        users=max(1, users),
        loadgen=loadgen,
        phases=tuple(p.strip() for p in phases.split(",") if p.strip()),
        database_url=url,
        idempotency=idempotency,
        log_level=log_level.upper(),
        keep_workdir=keep_workdir,
        with_worker=with_worker,
        json_path=json_path,
    )
    try:
        code = runner.main(config)
    except ValueError as exc:
        fail(str(exc), 2)
    raise typer.Exit(code)


def main() -> None:
    """Console entry point: typer usage errors exit 2, our failures 1, never a traceback."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        log.error("command_failed", error_type=type(exc).__name__, exc_info=exc)
        console.print(f"orderly: {type(exc).__name__}: {exc}", markup=False, highlight=False)
        sys.exit(1)
