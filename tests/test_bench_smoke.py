"""`orderly bench` end to end with tiny durations: it runs every phase and reports numbers.

A benchmark is not a test: nothing here judges speed. This proves the harness
works (scratch databases, the recorded pgbench transaction, the API and bare
servers, both load shapes, the job drain, `orderly serve`, the orders pass beside
a worker, on `orderly serve` and with recording off, credit payments against their
bare-asyncpg replay) and cleans up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest

pytestmark = pytest.mark.slow


async def _bench_databases(url: str) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT datname FROM pg_database"
            " WHERE datname ~ '^orderly_bench_[0-9a-f]{8}_(api|pg|jobs|worker|serve|norec)$'"
        )
    finally:
        await conn.close()
    return [row["datname"] for row in rows]


async def test_bench_runs_every_phase_and_reports_numbers(
    pg_server_url: str, tmp_path: Path
) -> None:
    before = set(await _bench_databases(pg_server_url))
    out = tmp_path / "bench.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERLY_")}
    # The data-heavy phases shrink to a smoke size (their full sizes are for real runs).
    env |= {
        "BENCH_ANALYTICS_ORDERS": "2000",
        "BENCH_RECOMMENDATIONS_ORDERS": "2000",
        "BENCH_REC_QUALITY_CUSTOMERS": "120",
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "orderly",
            "bench",
            # A warm-up per pass: on a busy CI machine a cold API can answer nothing
            # within a one-second pass.
            "--duration",
            "2",
            "--warmup",
            "1",
            "--connections",
            "4",
            "--pgbench-clients",
            "2",
            "--jobs",
            "300",
            "--products",
            "3",
            "--users",
            "2",
            "--phases",
            "all",
            "--loadgen",
            "auto",  # wrk where installed; the Python client has its own test below
            "--log-level",
            "WARNING",
            "--database-url",
            pg_server_url,
            "--json",
            str(out),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=420,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["errors"] == {}
    m = results["measurements"]

    assert m["pgbench"]["tps"] > 0
    assert m["pgbench"]["transactions"] > 0
    assert m["pgbench"]["failed"] == 0
    statements = results["pgbench_transaction"]["statements"]
    assert statements[0].startswith("BEGIN")
    assert statements[-1].startswith("COMMIT")
    assert any("INSERT INTO sales_order" in s for s in statements)

    for name in (
        "orders",
        "orders_half",
        "product",
        "bare",
        "orders_worker",
        "orders_worker_half",
        "orders_serve",
        "orders_serve_half",
        "orders_recording_off",
        "orders_recording_off_half",
        "pay",
        "pay_bare",
    ):
        assert m[name]["ok"] > 0, (name, m[name])
        assert m[name]["p99_ms"] > 0, (name, m[name])
    for name in ("orders", "orders_worker", "orders_serve", "orders_recording_off"):
        assert set(m[name]["statuses"]) == {"201"}, (name, m[name])
        assert m[name]["server_cpu_ms_per_request"] > 0
    assert m["orders_worker"]["worker_cpu_ms_per_request"] > 0
    # The pass with recording off recorded nothing; the normal one recorded its requests.
    assert m["orders_recording_off"]["slo_requests_recorded"] == 0
    assert m["orders"]["slo_requests_recorded"] >= m["orders"]["ok"]
    # Every payment over HTTP succeeded; the bare replay paid each order it took, once.
    assert set(m["pay"]["statuses"]) == {"200"}
    assert m["pay_bare"]["orders_paid"] == m["pay_bare"]["ledger_payments"] > 0
    pay_statements = results["pay_transaction"]["statements"]
    assert pay_statements[0].startswith("BEGIN")
    assert pay_statements[-1].startswith("COMMIT")
    assert any("ledger_account" in s for s in pay_statements)
    assert m["orders_half"]["target_rps"] > 0
    assert m["jobs"]["jobs"] == 300
    assert m["jobs"]["jobs_per_s"] > 0
    assert m["api_rss"]["peak_under_load_mb"] > 0
    assert m["serve"]["ready_s"] > 0
    assert m["flags"]["us_per_flag"] > 0
    assert m["launch"]["requests"] > 0  # benchmarks/launch.py, shrunk to --duration
    assert set(results["ratios"]) == {
        "orders_vs_pgbench",
        "orders_half_p99_ms",
        "product_vs_bare",
        "jobs_per_s",
        "api_peak_rss_mb",
        "serve_ready_s",
        "flag_eval_us",
        "orders_worker_vs_pgbench",
        "orders_worker_half_p99_ms",
        "orders_serve_vs_pgbench",
        "orders_serve_half_p99_ms",
        "pay_vs_bare_asyncpg",
        "orders_recording_off_vs_pgbench",
        "orders_recording_off_half_p99_ms",
        "orders_recording_ratio_cost",
        "orders_recording_cpu_ms",
    }
    assert "PRODUCT.md §9 targets" in done.stdout

    # Scratch databases are dropped and no temporary working directory is left behind.
    assert set(await _bench_databases(pg_server_url)) == before
    assert "workdir" not in results


def test_recorded_values_become_pgbench_expressions() -> None:
    """What varies per order becomes an expression; literals never carry a `:` pgbench would eat."""
    from benchmarks.capture import Renderer, Variables

    order = "5b0f7c1e-0000-4000-8000-000000000001"
    user = "5b0f7c1e-0000-4000-8000-0000000000a1"
    other_user = "5b0f7c1e-0000-4000-8000-0000000000a2"
    p1, p2 = "5b0f7c1e-0000-4000-8000-0000000000b1", "5b0f7c1e-0000-4000-8000-0000000000b2"
    renderer = Renderer(
        Variables(
            order_id=order,
            idempotency_key="key-1",
            per_user={user: [user, other_user]},
            products=[p1, p2],
            product_vars={p1: "p1", p2: "p2"},
        )
    )
    payload = b'{"order_id":"' + order.encode() + b'"}'
    args = [uuid.UUID(order), user, "key-1", [uuid.UUID(p2)], payload, None, "12:30"]
    sql = renderer.statement("INSERT INTO t VALUES ($1, $2, $3, $4, $5, $6, $7)", args)

    assert sql.startswith(f"INSERT INTO t VALUES (({Renderer.ORDER_ID}), ")
    assert f"(ARRAY['{user}', '{other_user}']::text[])[:u]" in sql
    assert Renderer.KEY in sql
    assert "::uuid[])[:p2]" in sql
    # the order id inside the job payload is swapped for this transaction's
    assert f"'{order}', ({Renderer.ORDER_ID})::text)" in sql
    assert "'12:30'" not in sql  # hex-encoded: pgbench would read `:30` as a variable
    assert sql.endswith(", (NULL), (convert_from(decode('31323a3330', 'hex'), 'UTF8')));")


def test_python_load_generator_closed_and_open_loop(tmp_path: Path) -> None:
    """The fallback load generator (and the open loop every run uses) against the bare app."""
    from benchmarks import loadgen
    from benchmarks.processes import HOST, ProcessGroup, clean_env, free_port, wait_http

    body = tmp_path / "body.json"
    body.write_bytes(b'{"ok":true}')
    port = free_port()
    group = ProcessGroup(tmp_path)
    root = str(Path(__file__).resolve().parent.parent)
    proc = group.start(
        "bare",
        ["-m", "benchmarks.bare_app", "--port", str(port), "--body-file", str(body)],
        clean_env({"PYTHONPATH": root}),
    )
    try:
        wait_http(f"http://{HOST}:{port}/livez", proc, timeout=30)
        plan = loadgen.GetPlan(f"/v1/products/{uuid.uuid4()}")
        closed = loadgen.closed_loop(
            plan, HOST, port, connections=4, duration=1, tool="python", threads=2
        )
        opened = loadgen.open_loop(plan, HOST, port, rate=50, duration=1, connections=4)
    finally:
        group.stop_all()
    assert closed.ok > 0
    assert set(closed.statuses) == {200}
    assert closed.p99_ms >= closed.p50_ms > 0
    assert opened.ok == 50
    assert opened.target_rps == 50
