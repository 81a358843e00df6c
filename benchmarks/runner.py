"""One benchmark run: every measurement of PRODUCT.md §9, side by side, on this machine.

Phases (each can be selected with ``--phases``; a failed phase is reported and
the others still run):

``pgbench``   the raw PostgreSQL ceiling — the recorded order transaction, pgbench
              ``-M prepared``, on a copy of the populated scratch database;
``orders``    ``POST /v1/orders`` through a real ``orderly api`` process: max
              throughput (closed loop), then an open loop at half of it (p99);
``products``  ``GET /v1/products/{id}`` against the same process, then against a bare
              FastAPI app serving the same bytes with the same uvicorn settings;
``jobs``      N no-op jobs drained by one worker process;
``serve``     ``orderly serve`` from a fresh embedded data dir until ``/readyz`` is 200;
``flags``     in-process flag evaluation, µs per flag (``benchmarks/flag_eval.py``);
``orders_worker``  the ``orders`` pass with one ``orderly worker`` process beside the
              API draining the order jobs (the production shape);
``orders_serve``   the ``orders`` pass on ``orderly serve``: API and worker in one process;
``orders_recording_off``  the ``orders`` pass on an API process that records no flag
              outcomes and no SLO request counts (``ORDERLY_RECORD_REQUEST_OUTCOMES=false``),
              beside the ``orders`` pass (recording on, the default) against the same pgbench;
``pay``       ``POST /v1/orders/{id}/pay`` with credits over HTTP, against the same
              recorded transaction replayed on bare asyncpg (``benchmarks/ledger_pay.py``);
``recommendations``  answer p50/p99 built in and with a hanging model
              (``benchmarks/recommendations.py``);
``rec_quality``  offline hit-rate@10, co-purchase vs popularity (``benchmarks/rec_quality.py``).

Only the first six are in the default set (``--phases all`` runs everything). No
job worker runs during the plain HTTP passes: order jobs accumulate in the queue
exactly as they do under pgbench (the queue-depth limit is raised so nothing is
shed), and draining is measured on its own in ``jobs``. ``orders_worker``,
``orders_serve`` and ``orders_recording_off`` each run on their own copy of the
populated database; ``orders_recording_off`` runs after the HTTP passes, or right
before them with ``BENCH_RECORDING_OFF_FIRST=1`` (to alternate the order between runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import select
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from benchmarks import capture, drain, loadgen, pgbench, report, shop
from benchmarks.processes import HOST, ProcessGroup, RssSampler, clean_env, free_port, wait_http

PHASES = (
    "pgbench", "orders", "products", "jobs", "serve", "flags",
    "orders_worker", "orders_serve", "pay", "analytics", "launch",
    "recommendations", "rec_quality", "orders_recording_off",
)  # fmt: skip
DEFAULT_PHASES = PHASES[:6]
HTTP_PHASES = {"orders", "products", "pay"}
# phase -> its database copy
ORDER_PASSES = {"orders_recording_off": "norec", "orders_worker": "worker", "orders_serve": "serve"}
RECORDING_OFF_PHASE = "orders_recording_off"
# What that pass's server is told on top of the benchmark's settings.
RECORDING_OFF_SETTINGS = {"ORDERLY_RECORD_REQUEST_OUTCOMES": "false"}


@dataclass
class BenchConfig:
    """Everything a run can be told (``orderly bench --help``)."""

    duration: float = 10.0
    warmup: float = 2.0
    connections: int = 32
    pgbench_clients: int = 8
    loadgen_threads: int = 2
    jobs: int = 20_000
    worker_batch_size: int = 20
    worker_concurrency: int = 50
    products: int = 100
    users: int = 8
    pay_users: int = 32  # the pay pass's customers: each payment locks its wallet row
    loadgen: loadgen.LoadTool = "auto"
    phases: tuple[str, ...] = DEFAULT_PHASES
    database_url: str | None = None
    idempotency: bool = True
    log_level: str = "INFO"
    keep_workdir: bool = False
    with_worker: bool = False
    json_path: Path | None = None
    # py-spy the API process during the `orders` closed loop (BENCH_PROFILE=py-spy: the
    # CLI has no flag for it yet). Sampling costs the server a little throughput.
    profile: bool = field(default_factory=lambda: os.environ.get("BENCH_PROFILE") == "py-spy")
    # Run `orders_recording_off` before the `orders` pass instead of after the HTTP passes
    # (BENCH_RECORDING_OFF_FIRST=1), so that runs can alternate which of the two goes first.
    recording_off_first: bool = field(
        default_factory=lambda: os.environ.get("BENCH_RECORDING_OFF_FIRST") == "1"
    )


@dataclass
class Run:
    """State shared by the phases of one run."""

    config: BenchConfig
    console: Console
    workdir: Path
    group: ProcessGroup
    server_url: str = ""
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    databases: list[str] = field(default_factory=list)
    secrets: shop.BenchSecrets = field(default_factory=shop.BenchSecrets)
    shop: shop.Shop | None = None
    api_db: str = ""
    body: bytes = b""
    media_type: str = "application/json"
    results: dict[str, Any] = field(
        default_factory=lambda: {"measurements": {}, "ratios": {}, "errors": {}}
    )

    @property
    def measurements(self) -> dict[str, Any]:
        """Per-phase numbers."""
        result: dict[str, Any] = self.results["measurements"]
        return result

    def say(self, message: str) -> None:
        """One progress line."""
        self.console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {message}", highlight=False)

    def database(self, suffix: str) -> str:
        """A scratch database name of this run."""
        name = f"orderly_bench_{self.run_id}_{suffix}"
        self.databases.append(name)
        return name


@contextlib.contextmanager
def _postgres(run: Run) -> Iterator[None]:
    """The server scratch databases live on: the given URL, else a throwaway embedded one."""
    if run.config.database_url:
        run.server_url = run.config.database_url
        yield
        return
    from orderly.core.embedded import EmbeddedPostgres

    run.say("starting a throwaway embedded PostgreSQL (no --database-url / ORDERLY_DATABASE_URL)")
    embedded = EmbeddedPostgres(run.workdir / "embedded")
    run.server_url = embedded.url
    try:
        yield
    finally:
        embedded.stop()


def _phase(run: Run, name: str, body: Callable[[], None]) -> bool:
    try:
        body()
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}"
        run.results["errors"][name] = message[:1500]
        run.say(f"[red]{name} failed[/]: {message[:300]}")
        return False
    return True


# ---------------------------------------------------------------- setup


def _setup(run: Run) -> None:
    from orderly import migrate

    async def main() -> None:
        run.results["environment"]["postgres"] = await shop.server_version(run.server_url)
        run.api_db = run.database("api")
        url = await shop.create_database(run.server_url, run.api_db)
        await asyncio.to_thread(migrate.upgrade, url, "head")
        env = _api_env(run, url)
        run.shop = await shop.build_shop(env, users=run.config.users, products=run.config.products)
        # Copies of the populated database: pgbench's, the job drain's and each extra
        # orders pass's own (made now: a template must have no other connection).
        copies = ["pg", "jobs"]
        copies += [suffix for phase, suffix in ORDER_PASSES.items() if phase in run.config.phases]
        for suffix in copies:
            await shop.create_database(run.server_url, run.database(suffix), template=run.api_db)

    run.say(
        f"setup: scratch database, migrations, {run.config.users} customers, "
        f"{run.config.products} products, one recorded order"
    )
    asyncio.run(main())


def _api_env(run: Run, url: str) -> dict[str, str]:
    return shop.server_settings(run.secrets, url, run.workdir / "api-data", run.config.log_level)


def _url(run: Run, suffix: str) -> str:
    return shop.database_url(run.server_url, f"orderly_bench_{run.run_id}_{suffix}")


# ---------------------------------------------------------------- phases


def _pgbench(run: Run) -> None:
    assert run.shop is not None
    cfg = run.config
    script = capture.render_script(run.shop.recorded, run.shop.variables, n_users=cfg.users)
    run.results["pgbench_transaction"] = {
        "statements": script.statements,
        "excluded": script.excluded,
        "round_trips": script.round_trips,
    }
    (run.workdir / "order_transaction.sql").write_text(script.text)
    url = _url(run, "pg")
    threads = cfg.loadgen_threads
    if cfg.warmup > 0:
        run.say(f"pgbench warm-up {cfg.warmup:.0f} s")
        pgbench.run_pgbench(
            url, script.text, clients=cfg.pgbench_clients, threads=threads, duration=cfg.warmup
        )
    run.say(f"pgbench: {cfg.pgbench_clients} clients, {cfg.duration:.0f} s, -M prepared")
    result = pgbench.run_pgbench(
        url, script.text, clients=cfg.pgbench_clients, threads=threads, duration=cfg.duration
    )
    run.measurements["pgbench"] = result.as_dict()
    run.say(f"  {result.tps:,.0f} tps, p99 {result.p99_ms:.1f} ms")


@contextlib.contextmanager
def _api_server(
    run: Run,
    *,
    suffix: str = "api",
    command: str = "api",
    worker: bool | None = None,
    settings: dict[str, str] | None = None,
) -> Iterator[tuple[int, RssSampler, RssSampler | None]]:
    """``orderly <command>`` on the scratch database *suffix*; optionally a worker beside it.

    *settings* (``ORDERLY_*`` variables) go to both processes on top of the benchmark's.
    Yields the port, a sampler of the server process and one of the worker process.
    """
    port = free_port()
    env = clean_env(
        {
            **_api_env(run, _url(run, suffix)),
            "ORDERLY_HOST": HOST,
            "ORDERLY_PORT": str(port),
            "ORDERLY_WORKER_METRICS_PORT": "0",
            **(settings or {}),
        }
    )
    what = "API and worker in one process" if command == "serve" else "1 process"
    run.say(f"starting `orderly {command}` on {HOST}:{port} (uvicorn, {what})")
    proc = run.group.start(command, ["-m", "orderly", command], env, cwd=run.workdir)
    worker_proc = None
    if run.config.with_worker if worker is None else worker:
        run.say("starting `orderly worker` in its own process (it drains the order jobs)")
        worker_proc = run.group.start(
            f"{command}-worker", ["-m", "orderly", "worker"], env, cwd=run.workdir
        )
    try:
        wait_http(f"http://{HOST}:{port}/readyz", proc, timeout=60)
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}\n{run.group.log_tail(command)}") from None
    sampler = RssSampler(proc.pid)
    worker_sampler = RssSampler(worker_proc.pid) if worker_proc is not None else None
    try:
        yield port, sampler, worker_sampler
    finally:
        if suffix == "api":
            run.results["measurements"].setdefault("api_rss", {})["idle_after_mb"] = round(
                _safe_rss(sampler) / 2**20, 1
            )
        run.group.stop(proc)
        if worker_proc is not None:
            run.group.stop(worker_proc)


def _safe_rss(sampler: RssSampler) -> int:
    try:
        return sampler.current()
    except Exception:
        return 0


def _order_plan(run: Run, label: str) -> loadgen.OrderPlan:
    """Orders from the shop's customers; *label* keeps idempotency keys apart between passes."""
    assert run.shop is not None
    import orjson

    return loadgen.OrderPlan(
        tokens=tuple(run.shop.tokens),
        product_ids=tuple(run.shop.product_ids),
        address_json=orjson.dumps(shop.ADDRESS).decode(),
        key_prefix=f"bench-{run.run_id}-{label}",
        idempotency=run.config.idempotency,
    )


def _closed(run: Run, plan: loadgen.Plan, port: int, duration: float) -> loadgen.LoadResult:
    cfg = run.config
    tool = loadgen.choose_tool(cfg.loadgen)
    return loadgen.closed_loop(
        plan,
        HOST,
        port,
        connections=cfg.connections,
        duration=duration,
        tool=tool,
        threads=cfg.loadgen_threads,
    )


def _http_phases(run: Run) -> None:
    cfg = run.config
    counted_before = asyncio.run(_recorded_requests(_url(run, "api")))  # setup's own requests
    with _api_server(run) as (port, sampler, worker):
        rss = run.measurements.setdefault("api_rss", {})
        rss["idle_mb"] = round(sampler.current() / 2**20, 1)
        if "orders" in cfg.phases:
            _phase(run, "orders", lambda: _orders(run, port, sampler, worker, key="orders"))
        if "products" in cfg.phases:
            _phase(run, "products", lambda: _products(run, port, sampler))
        if "pay" in cfg.phases:
            _phase(run, "pay", lambda: _pay(run, port, sampler))
        rss["peak_under_load_mb"] = round(sampler.peak / 2**20, 1)
    if "orders" in run.measurements:  # the server has stopped: its last counts are flushed
        recorded = asyncio.run(_recorded_requests(_url(run, "api"))) - counted_before
        run.measurements["orders"]["slo_requests_recorded"] = recorded
    if "products" in cfg.phases and "product" in run.measurements:
        _phase(run, "products", lambda: _bare(run))


def _order_pass(run: Run, phase: str) -> None:
    """The orders pass on its own database copy: beside a worker, on `orderly serve`, or on
    an API process that records no flag outcomes and SLO request counts (otherwise as `orders`).
    """
    suffix = ORDER_PASSES[phase]
    command, worker, settings = {
        "orders_worker": ("api", True, None),
        "orders_serve": ("serve", False, None),
        "orders_recording_off": ("api", None, RECORDING_OFF_SETTINGS),
    }[phase]
    url = _url(run, suffix)
    counted_before = asyncio.run(_recorded_requests(url))  # setup's, copied with the database
    server = _api_server(run, suffix=suffix, command=command, worker=worker, settings=settings)
    with server as (port, sampler, wsm):
        _orders(run, port, sampler, wsm, key=phase)
    run.measurements[phase]["jobs_queued_after"] = asyncio.run(_queued(url))
    recorded = asyncio.run(_recorded_requests(url)) - counted_before
    run.measurements[phase]["slo_requests_recorded"] = recorded
    if settings is RECORDING_OFF_SETTINGS and recorded:
        raise RuntimeError(f"the server with recording off recorded {recorded} requests")


async def _queued(url: str) -> int:
    import asyncpg

    from orderly.core.jobs import QUEUE_TABLE

    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval(f"SELECT count(*) FROM {QUEUE_TABLE}"))
    finally:
        await conn.close()


async def _recorded_requests(url: str) -> int:
    """Requests the servers on *url* counted for the availability SLO (what recording wrote)."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return int(
            await conn.fetchval(
                "SELECT COALESCE(sum(count), 0) FROM slo_request_minute"
                " WHERE series = 'availability'"
            )
        )
    finally:
        await conn.close()


def _orders(
    run: Run, port: int, sampler: RssSampler, worker: RssSampler | None, *, key: str
) -> None:
    """Closed loop (max throughput), then an open loop at half of it; stored under *key*."""
    cfg = run.config
    title = {
        "orders": "",
        "orders_worker": " (+ worker)",
        "orders_serve": " (serve)",
        "orders_recording_off": " (recording off)",
    }[key]
    if cfg.warmup > 0:
        run.say(f"POST /v1/orders{title} warm-up {cfg.warmup:.0f} s")
        _closed(run, _order_plan(run, f"{key}-warmup"), port, cfg.warmup)
    run.say(f"POST /v1/orders{title}: {cfg.connections} connections, {cfg.duration:.0f} s")
    profiler = _start_profile(run, sampler.process.pid, key) if key == "orders" else None
    with _sampling(sampler, worker):
        result = _closed(run, _order_plan(run, f"{key}-max"), port, cfg.duration)
    if profiler is not None:
        _finish_profile(run, profiler, key)
    _cpu_per_request(result, sampler, worker)
    run.measurements[key] = result.as_dict()
    run.say(
        f"  {result.ok_rps:,.0f} rps (2xx), p99 {result.p99_ms:.1f} ms, statuses {result.statuses}"
        f", server CPU {result.extra.get('server_cpu_ms_per_request', 0):.2f} ms/req"
    )
    if result.ok == 0:
        raise RuntimeError(f"no 2xx answer to POST /v1/orders: {result.statuses}")
    rate = result.ok_rps / 2
    run.say(f"POST /v1/orders{title} open loop at {rate:,.0f} rps for {cfg.duration:.0f} s")
    with _sampling(sampler, worker):
        half = loadgen.open_loop(
            _order_plan(run, f"{key}-half"), HOST, port, rate, cfg.duration, cfg.connections
        )
    _cpu_per_request(half, sampler, worker)
    run.measurements[f"{key}_half"] = half.as_dict()
    run.say(f"  p99 {half.p99_ms:.1f} ms at {half.ok_rps:,.0f} rps")


def _start_profile(run: Run, pid: int, key: str) -> subprocess.Popen[bytes] | None:
    if not run.config.profile:
        return None
    binary = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(binary).exists():
        run.say("[yellow]py-spy not installed (pip install py-spy): no profile[/]")
        return None
    out = run.workdir / f"{key}-api.folded"
    run.say(f"py-spy: sampling the API process (pid {pid}) at 100 Hz into {out.name}")
    return subprocess.Popen(  # our own profiler, on our own child process
        [
            binary,
            "record",
            "-p",
            str(pid),
            "-r",
            "100",
            "-d",
            str(max(1, round(run.config.duration))),
            "--nolineno",
            "--format",
            "raw",
            "-o",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=(run.workdir / f"{key}-py-spy.log").open("wb"),
    )


def _finish_profile(run: Run, proc: subprocess.Popen[bytes], key: str) -> None:
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
    out = run.workdir / f"{key}-api.folded"
    if out.exists():
        run.results.setdefault("profile", {})[key] = report.top_frames(out.read_text())
        run.results["profile"][key]["folded"] = str(out)


@contextlib.contextmanager
def _sampling(sampler: RssSampler, worker: RssSampler | None) -> Iterator[None]:
    with sampler.running():
        if worker is None:
            yield
        else:
            with worker.running():
                yield


def _pay(run: Run, port: int, sampler: RssSampler) -> None:
    """Credit payments over HTTP vs the same recorded transaction on bare asyncpg."""
    from benchmarks import ledger_pay

    cfg = run.config
    url = _url(run, "api")
    env = _api_env(run, url)
    run.say(f"pay setup: {cfg.pay_users} customers with credits, two recorded credit payments")
    setup = asyncio.run(shop.build_pay(env, users=cfg.pay_users))
    replay = setup.replay
    run.results["pay_transaction"] = {
        "statements": replay.summary,
        "excluded": replay.excluded,
        "round_trips": len(replay.summary),
    }
    # Pending copies of a real order for both passes (an order is paid once). Generous:
    # the HTTP pass cannot reach 1,500 payments/s on this machine kind, nor bare 4,000.
    owners = [uuid.UUID(u) for u in setup.user_ids]
    template = uuid.UUID(setup.template_order)
    n_http = int(1500 * (cfg.duration + cfg.warmup)) + 200
    n_bare = int(4000 * (cfg.duration + cfg.warmup)) + 200
    run.say(f"pay setup: {n_http + n_bare:,} pending copies of one order")
    targets = asyncio.run(ledger_pay.clone_orders(url, template, owners, n_http + n_bare))
    http_targets, bare_targets = targets[:n_http], targets[n_http:]

    split = int(4000 * cfg.warmup)

    async def bare() -> tuple[list[uuid.UUID], ledger_pay.ReplayResult]:
        used: list[uuid.UUID] = []
        if cfg.warmup > 0:
            warm = await ledger_pay.replay(
                url, replay, bare_targets[:split], seconds=cfg.warmup, key_prefix="bare-warm"
            )
            used += [order for _, order in bare_targets[: warm.orders_used]]
        measured = bare_targets[split:]
        result = await ledger_pay.replay(
            url, replay, measured, seconds=cfg.duration, key_prefix=f"bare-{run.run_id}"
        )
        used += [order for _, order in measured[: result.orders_used]]
        return used, result

    run.say(f"pay, bare asyncpg replay: pool 10, 10 tasks, {cfg.duration:.0f} s")
    used, reference = loadgen.run_uvloop(bare())
    run.measurements["pay_bare"] = reference.as_dict()
    # The replay must have done what the app does: every order it took is paid, once.
    paid, posted = asyncio.run(ledger_pay.count_paid(url, used))
    run.measurements["pay_bare"].update(orders_paid=paid, ledger_payments=posted)
    if not paid == posted == len(used):
        raise RuntimeError(
            f"the bare replay paid {paid} orders with {posted} ledger payments"
            f" where it ran {len(used)} transactions"
        )
    run.say(
        f"  {reference.transactions / reference.seconds:,.0f} tps, p99 "
        f"{run.measurements['pay_bare']['p99_ms']:.1f} ms, Python CPU "
        f"{run.measurements['pay_bare']['client_cpu_ms_per_request']:.2f} ms/tx "
        f"({paid:,} orders paid, checked)"
    )
    tokens = tuple(setup.tokens)
    pairs = tuple((user, str(order)) for user, order in http_targets)
    warm_n = int(1500 * cfg.warmup)

    def plan(label: str, orders: tuple[tuple[int, str], ...]) -> loadgen.PayPlan:
        return loadgen.PayPlan(
            tokens, orders, f"bench-{run.run_id}-{label}", idempotency=cfg.idempotency
        )

    if cfg.warmup > 0:
        _closed(run, plan("pay-warmup", pairs[:warm_n]), port, cfg.warmup)
    run.say(
        f"POST /v1/orders/{{id}}/pay (credits): {cfg.connections} connections, {cfg.duration:.0f} s"
    )
    with sampler.running():
        result = _closed(run, plan("pay", pairs[warm_n:]), port, cfg.duration)
    _cpu_per_request(result, sampler)
    run.measurements["pay"] = result.as_dict()
    run.say(
        f"  {result.ok_rps:,.0f} rps (2xx), p99 {result.p99_ms:.1f} ms, statuses {result.statuses}"
        f", server CPU {result.extra.get('server_cpu_ms_per_request', 0):.2f} ms/req"
    )
    if result.ok == 0:
        raise RuntimeError(f"no 2xx answer to POST /v1/orders/{{id}}/pay: {result.statuses}")


def _cpu_per_request(
    result: loadgen.LoadResult, sampler: RssSampler, worker: RssSampler | None = None
) -> None:
    """The server process's CPU time per answered request during the pass, and its RSS after.

    With a worker process beside it, the worker's CPU per request too.
    """
    result.extra["server_rss_mb_after"] = round(_safe_rss(sampler) / 2**20, 1)
    if result.requests:
        result.extra["server_cpu_ms_per_request"] = round(
            sampler.cpu_seconds * 1000 / result.requests, 3
        )
        if worker is not None:
            result.extra["worker_cpu_ms_per_request"] = round(
                worker.cpu_seconds * 1000 / result.requests, 3
            )


def _products(run: Run, port: int, sampler: RssSampler) -> None:
    assert run.shop is not None
    cfg = run.config
    path = f"/v1/products/{run.shop.product_ids[0]}"
    response = httpx.get(f"http://{HOST}:{port}{path}", timeout=5)
    response.raise_for_status()
    run.body = response.content
    run.media_type = response.headers.get("content-type", "application/json")
    plan = loadgen.GetPlan(path)
    if cfg.warmup > 0:
        _closed(run, plan, port, cfg.warmup)
    run.say(f"GET {path} (orderly): {cfg.connections} connections, {cfg.duration:.0f} s")
    with sampler.running():
        result = _closed(run, plan, port, cfg.duration)
    _cpu_per_request(result, sampler)
    run.measurements["product"] = result.as_dict()
    run.say(f"  {result.ok_rps:,.0f} rps, p99 {result.p99_ms:.1f} ms")


def _bare(run: Run) -> None:
    assert run.shop is not None
    cfg = run.config
    body_file = run.workdir / "product.json"
    body_file.write_bytes(run.body)
    port = free_port()
    args = [
        "-m",
        "benchmarks.bare_app",
        "--port",
        str(port),
        "--body-file",
        str(body_file),
        "--media-type",
        run.media_type,
    ]
    env = clean_env({"PYTHONPATH": _pythonpath()})
    proc = run.group.start("bare", args, env, cwd=run.workdir)
    try:
        wait_http(f"http://{HOST}:{port}/livez", proc, timeout=30)
        path = f"/v1/products/{run.shop.product_ids[0]}"
        check = httpx.get(f"http://{HOST}:{port}{path}", timeout=5)
        if check.content != run.body:
            raise RuntimeError("the bare app does not answer the same bytes")
        plan = loadgen.GetPlan(path)
        if cfg.warmup > 0:
            _closed(run, plan, port, cfg.warmup)
        run.say(f"GET {path} (bare FastAPI): {cfg.connections} connections, {cfg.duration:.0f} s")
        sampler = RssSampler(proc.pid)
        with sampler.running():
            result = _closed(run, plan, port, cfg.duration)
        _cpu_per_request(result, sampler)
    finally:
        run.group.stop(proc)
    run.measurements["bare"] = result.as_dict()
    run.say(f"  {result.ok_rps:,.0f} rps, p99 {result.p99_ms:.1f} ms")


def _pythonpath() -> str:
    root = str(Path(__file__).resolve().parent.parent)
    existing = os.environ.get("PYTHONPATH")
    return f"{root}{os.pathsep}{existing}" if existing else root


def _read_ready(proc: subprocess.Popen[bytes], timeout: float) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    buffer = b""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited with {proc.returncode}")
        ready, _, _ = select.select([proc.stdout], [], [], 0.1)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 4096)
            buffer += chunk
            if b"READY" in buffer:
                return
    raise RuntimeError(f"worker not ready after {timeout:.0f} s")


def _jobs(run: Run) -> None:
    cfg = run.config
    url = _url(run, "jobs")

    async def clear() -> None:
        import asyncpg

        conn = await asyncpg.connect(url)
        try:
            await conn.execute("DELETE FROM pgqueuer")
        finally:
            await conn.close()

    asyncio.run(clear())
    args = [
        "-m",
        "benchmarks.drain",
        url,
        "--batch-size",
        str(cfg.worker_batch_size),
        "--concurrency",
        str(cfg.worker_concurrency),
    ]
    env = clean_env({"PYTHONPATH": _pythonpath()})
    run.say(
        f"job drain: starting a worker process (batch {cfg.worker_batch_size}, "
        f"concurrency {cfg.worker_concurrency})"
    )
    proc = run.group.start("worker", args, env, cwd=run.workdir, stdout_pipe=True)
    try:
        _read_ready(proc, timeout=60)
        run.say(
            f"job drain: enqueue {cfg.jobs:,} no-op jobs in one transaction, wait until drained"
        )

        async def measure() -> float:
            await drain.enqueue_noops(url, cfg.jobs)
            return await drain.wait_empty(url, limit_s=max(60.0, cfg.jobs / 200))

        seconds = asyncio.run(measure())
    finally:
        run.group.stop(proc)
    result = drain.DrainResult(cfg.jobs, seconds, cfg.worker_batch_size, cfg.worker_concurrency)
    run.measurements["jobs"] = result.as_dict()
    run.say(f"  {result.jobs_per_s:,.0f} jobs/s")


def _serve(run: Run) -> None:
    home = run.workdir / "serve"
    home.mkdir()
    port = free_port()
    env = clean_env(
        {
            "ORDERLY_PORT": str(port),
            "ORDERLY_HOST": HOST,
            "ORDERLY_LOG_LEVEL": "WARNING",
            "ORDERLY_DATA_DIR": str(home / ".orderly"),
        }
    )
    run.say("`orderly serve` on a fresh embedded data dir: time to /readyz 200")
    started = time.monotonic()
    proc = run.group.start("serve", ["-m", "orderly", "serve"], env, cwd=home)
    try:
        wait_http(f"http://{HOST}:{port}/readyz", proc, timeout=60, interval=0.01)
        seconds = time.monotonic() - started
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}\n{run.group.log_tail('serve')}") from None
    finally:
        run.group.stop(proc)
        _stop_leftover_postgres(home / ".orderly" / "pg")
    run.measurements["serve"] = {"ready_s": round(seconds, 3)}
    run.say(f"  ready in {seconds:.2f} s")


def _flags(run: Run) -> None:
    from benchmarks import flag_eval

    run.say("flag evaluation in process (µs per flag, best of 3)")
    rows = flag_eval.measure()
    run.measurements["flags"] = {"us_per_flag": round(rows[flag_eval.ROW], 2), "rows": rows}
    run.say(f"  {rows[flag_eval.ROW]:.2f} µs per flag")


def _stop_leftover_postgres(pgdata: Path) -> None:
    """pgserver stops its server when the last user exits; make sure of it."""
    if not (pgdata / "postmaster.pid").exists():
        return
    from benchmarks.pgbench import pgbench_binary

    pg_ctl = Path(pgbench_binary()).with_name("pg_ctl")
    if pg_ctl.exists():
        subprocess.run(
            [str(pg_ctl), "-D", str(pgdata), "stop", "-m", "fast", "-w"],
            capture_output=True,
            timeout=30,
            check=False,
        )


# ---------------------------------------------------------------- the run


def _ratios(run: Run) -> None:
    m = run.measurements
    ratios = run.results["ratios"]
    if "orders" in m and "pgbench" in m and m["pgbench"]["tps"]:
        ratios["orders_vs_pgbench"] = round(m["orders"]["ok_rps"] / m["pgbench"]["tps"], 3)
    if "orders_half" in m:
        ratios["orders_half_p99_ms"] = m["orders_half"]["p99_ms"]
    if "product" in m and "bare" in m and m["bare"]["ok_rps"]:
        ratios["product_vs_bare"] = round(m["product"]["ok_rps"] / m["bare"]["ok_rps"], 3)
    if "jobs" in m:
        ratios["jobs_per_s"] = m["jobs"]["jobs_per_s"]
    if m.get("api_rss", {}).get("peak_under_load_mb"):
        ratios["api_peak_rss_mb"] = m["api_rss"]["peak_under_load_mb"]
    if "serve" in m:
        ratios["serve_ready_s"] = m["serve"]["ready_s"]
    if "flags" in m:
        ratios["flag_eval_us"] = m["flags"]["us_per_flag"]
    for phase in ORDER_PASSES:
        if phase in m and "pgbench" in m and m["pgbench"]["tps"]:
            ratios[f"{phase}_vs_pgbench"] = round(m[phase]["ok_rps"] / m["pgbench"]["tps"], 3)
        if f"{phase}_half" in m:
            ratios[f"{phase}_half_p99_ms"] = m[f"{phase}_half"]["p99_ms"]
    if "pay" in m and "pay_bare" in m and m["pay_bare"]["tps"]:
        ratios["pay_vs_bare_asyncpg"] = round(m["pay"]["ok_rps"] / m["pay_bare"]["tps"], 3)
    # What recording flag outcomes and SLO request counts costs the order path: the ratio
    # it gives up, and the API's CPU per order it adds (on minus off; CPU is the steadier).
    off = RECORDING_OFF_PHASE
    if "orders_vs_pgbench" in ratios and f"{off}_vs_pgbench" in ratios:
        ratios["orders_recording_ratio_cost"] = round(
            ratios[f"{off}_vs_pgbench"] - ratios["orders_vs_pgbench"], 3
        )
    cpu = "server_cpu_ms_per_request"
    if cpu in m.get("orders", {}) and cpu in m.get(off, {}):
        ratios["orders_recording_cpu_ms"] = round(m["orders"][cpu] - m[off][cpu], 3)


def _cleanup_databases(run: Run) -> None:
    async def drop() -> None:
        for name in reversed(run.databases):
            with contextlib.suppress(Exception):
                await shop.drop_database(run.server_url, name)

    if run.server_url and run.databases:
        asyncio.run(drop())
        run.databases.clear()


def run_benchmark(config: BenchConfig, console: Console | None = None) -> dict[str, Any]:
    """Run the selected phases; return every number (also on partial failure)."""
    from orderly.core.telemetry import configure_logging

    configure_logging("WARNING", json=True)
    console = console or Console(stderr=True)
    if "all" in config.phases:
        config.phases = tuple(dict.fromkeys(p for p in (*config.phases, *PHASES) if p != "all"))
    unknown = set(config.phases) - set(PHASES)
    if unknown:
        raise ValueError(f"unknown phase(s): {', '.join(sorted(unknown))}; known: {PHASES}")
    workdir = Path(tempfile.mkdtemp(prefix="orderly-bench-"))
    run = Run(config, console, workdir, ProcessGroup(workdir))
    tool = loadgen.choose_tool(config.loadgen)
    run.results["environment"] = {
        "cores": loadgen.cpu_count(),
        "python": platform.python_version(),
        "load generator": (
            f"wrk (closed loop, {config.loadgen_threads} threads) + python open loop"
            if tool == "wrk"
            else f"python ({config.loadgen_threads} processes) — wrk not used"
        ),
        "shares cores with server": "yes",
        "worker during the orders, products and pay passes": (
            "`orderly worker` in its own process"
            if config.with_worker
            else "none (jobs accumulate; drain measured separately)"
        ),
    }
    load = os.getloadavg()
    run.results["environment"]["load average at start"] = " ".join(f"{x:.2f}" for x in load)
    if load[0] > 0.5 * loadgen.cpu_count():
        run.say(
            f"[yellow]the machine is busy (load {load[0]:.1f} on {loadgen.cpu_count()} cores): "
            "expect noisy numbers[/]"
        )
    run.results["config"] = {
        k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()
    }
    run.results["config"].pop("database_url", None)
    started = time.monotonic()
    failed = False
    try:
        with _postgres(run):
            needs_shop = {"pgbench", "launch", *HTTP_PHASES, *ORDER_PASSES} & set(config.phases)
            ok = _phase(run, "setup", lambda: _setup(run)) if needs_shop else True
            if ok and "pgbench" in config.phases:
                _phase(run, "pgbench", lambda: _pgbench(run))
            passes = [phase for phase in ORDER_PASSES if ok and phase in config.phases]
            if config.recording_off_first and RECORDING_OFF_PHASE in passes:
                passes.remove(RECORDING_OFF_PHASE)
                _phase(run, RECORDING_OFF_PHASE, lambda: _order_pass(run, RECORDING_OFF_PHASE))
            if ok and HTTP_PHASES & set(config.phases):
                _phase(run, "http", lambda: _http_phases(run))
            for phase in passes:
                _phase(run, phase, lambda phase=phase: _order_pass(run, phase))
            if ok and "launch" in config.phases:  # benchmarks/launch.py
                from benchmarks import launch

                _phase(run, "launch", lambda: launch.run_phase(run))
            if "analytics" in config.phases:  # benchmarks/analytics.py
                from benchmarks import analytics

                _phase(run, "analytics", lambda: analytics.run_phase(run))
            if "recommendations" in config.phases:  # benchmarks/recommendations.py
                from benchmarks import recommendations

                _phase(run, "recommendations", lambda: recommendations.run_phase(run))
            if "rec_quality" in config.phases:  # benchmarks/rec_quality.py
                from benchmarks import rec_quality

                _phase(run, "rec_quality", lambda: rec_quality.run_phase(run))
            if "jobs" in config.phases:
                if not any(name.endswith("_jobs") for name in run.databases):
                    _phase(run, "jobs_setup", lambda: _jobs_database(run))
                _phase(run, "jobs", lambda: _jobs(run))
            run.group.stop_all()
            _cleanup_databases(run)
        if "serve" in config.phases:
            _phase(run, "serve", lambda: _serve(run))
        if "flags" in config.phases:
            _phase(run, "flags", lambda: _flags(run))
    except BaseException:
        failed = True
        raise
    finally:
        run.group.stop_all()
        with contextlib.suppress(Exception):
            _cleanup_databases(run)
        keep = config.keep_workdir or (not failed and bool(run.results["errors"]))
        if keep:
            run.results["workdir"] = str(workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    run.results["environment"]["load average at end"] = " ".join(
        f"{x:.2f}" for x in os.getloadavg()
    )
    run.results["elapsed_s"] = round(time.monotonic() - started, 1)
    _ratios(run)
    return run.results


def _jobs_database(run: Run) -> None:
    from orderly import migrate

    async def main() -> None:
        url = await shop.create_database(run.server_url, run.database("jobs"))
        await asyncio.to_thread(migrate.upgrade, url, "head")

    asyncio.run(main())


def main(config: BenchConfig) -> int:
    """Run, print the tables, write JSON when asked; exit code 1 if a phase failed."""
    console = Console(stderr=True)
    results = run_benchmark(config, console)
    report.render(results, Console())
    if config.json_path is not None:
        report.write_json(results, config.json_path)
        console.print(f"results written to {config.json_path}", highlight=False)
    if "workdir" in results:
        console.print(f"logs and scripts kept in {results['workdir']}", highlight=False)
    return 1 if results["errors"] else 0


if __name__ == "__main__":  # pragma: no cover - use `orderly bench` or `python -m benchmarks`
    sys.exit(main(BenchConfig()))
