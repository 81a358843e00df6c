"""The launch load of PRODUCT.md §9 (``orderly bench --phases launch``).

1,000 concurrent keep-alive connections for 60 s, 80 % ``GET /v1/products/{id}``
and 20 % ``POST /v1/orders`` (wrk, one Lua script mixing both), against one
``orderly api`` with one ``orderly worker`` beside it — the production shape —
on a copy of the populated scratch database. Targets: error rate < 1 %
(every non-2xx answer, a 503 ``overloaded`` included, and every socket error or
timeout counts), p99 < 1 s. A run with ``--duration`` under 10 s shrinks it
(the smoke test's); ``BENCH_LAUNCH_SECONDS`` / ``BENCH_LAUNCH_CONNECTIONS`` set
it explicitly. :func:`run_mixed` drives the same load through the topology's
HAProxy (tests/deploy/test_topology.py with ``ORDERLY_TOPOLOGY_LAUNCH_SECONDS``).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from benchmarks import loadgen, shop

if TYPE_CHECKING:
    from benchmarks.runner import Run

CONNECTIONS = 1_000
SECONDS = 60.0
ORDER_SHARE = 0.2
TARGET_ERROR_RATE = 0.01
TARGET_P99_MS = 1_000.0

_WRK_MIXED = r"""
local tokens = {%(tokens)s}
local products = {%(products)s}
local address = '%(address)s'
local prefix = "%(prefix)s"
local order_share = %(order_share)f
local counter = 0
function init(args)
  statuses = {}
  math.randomseed(tid * 7919 + os.time())
end
function request()
  counter = counter + 1
  local n = #products
  local a = math.random(n)
  if math.random() >= order_share then
    return wrk.format("GET", "/v1/products/" .. products[a])
  end
  local b = (a + math.random(n - 1) - 1) %% n + 1
  local items = '{"product_id":"' .. products[a] .. '","quantity":1},' ..
                '{"product_id":"' .. products[b] .. '","quantity":1}'
  local body = '{"items":[' .. items .. '],"shipping_address":' .. address .. '}'
  local headers = {}
  headers["Content-Type"] = "application/json"
  headers["Authorization"] = "Bearer " .. tokens[(counter + tid) %% #tokens + 1]
  headers["Idempotency-Key"] = prefix .. "-" .. tid .. "-" .. counter
  return wrk.format("POST", "/v1/orders", headers, body)
end
"""


def _lua(values: list[str] | tuple[str, ...]) -> str:
    return ", ".join(f'"{v}"' for v in values)


def mixed_script(tokens: list[str], product_ids: list[str], prefix: str) -> str:
    """The wrk Lua script: 80 % product reads, 20 % orders, JSON summary at the end."""
    body = _WRK_MIXED % {
        "tokens": _lua(tokens),
        "products": _lua(product_ids),
        "address": orjson.dumps(shop.ADDRESS).decode().replace("'", "\\'"),
        "prefix": prefix,
        "order_share": ORDER_SHARE,
    }
    return body + loadgen._WRK_COMMON


def run_mixed(
    base_url: str,
    *,
    tokens: list[str],
    product_ids: list[str],
    prefix: str,
    connections: int = CONNECTIONS,
    duration: float = SECONDS,
    threads: int = 2,
) -> dict[str, Any]:
    """Run the mixed load with wrk against *base_url*; the figures as a dict."""
    binary = loadgen.wrk_binary()
    if binary is None:
        raise RuntimeError("the launch load needs wrk (apt-get install wrk)")
    with tempfile.TemporaryDirectory(prefix="orderly-launch-") as tmp:
        script = Path(tmp) / "launch.lua"
        script.write_text(mixed_script(tokens, product_ids, prefix), encoding="utf-8")
        done = subprocess.run(
            [
                binary,
                f"-t{threads}",
                f"-c{connections}",
                f"-d{max(1, round(duration))}s",
                "--timeout",
                "10s",
                "-s",
                str(script),
                base_url,
            ],
            capture_output=True,
            text=True,
            timeout=duration + 60,
            check=False,
        )
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()[:300]}")
    data = json.loads(line.removeprefix("WRK_JSON "))
    statuses = {int(k): int(v) for k, v in data["statuses"].items()}
    answered = sum(statuses.values())
    ok = sum(n for s, n in statuses.items() if 200 <= s < 300)
    failed = answered - ok + int(data["socket_errors"])
    attempts = answered + int(data["socket_errors"])
    seconds = data["duration_us"] / 1e6
    return {
        "connections": connections,
        "duration_s": round(seconds, 1),
        "requests": attempts,
        "ok": ok,
        "rps": round(answered / seconds, 1) if seconds else 0.0,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "socket_errors": int(data["socket_errors"]),
        "error_rate": round(failed / attempts, 5) if attempts else 1.0,
        "p50_ms": data["p50"] / 1000,
        "p99_ms": data["p99"] / 1000,
        "max_ms": data["max"] / 1000,
    }


def meets_targets(figures: dict[str, Any]) -> bool:
    """Error rate < 1 % and p99 < 1 s."""
    return bool(figures["error_rate"] < TARGET_ERROR_RATE and figures["p99_ms"] < TARGET_P99_MS)


def run_phase(run: Run) -> None:
    """The bench phase: a copy of the shop database, `orderly api` + worker, the mixed load."""
    from benchmarks import runner

    assert run.shop is not None
    # A short run (`--duration` under 10 s: a smoke test, a quick look) shrinks the phase
    # to that duration and 25 connections per `--connections`; the environment overrides.
    short = run.config.duration < 10
    connections = int(
        os.environ.get(
            "BENCH_LAUNCH_CONNECTIONS",
            min(CONNECTIONS, 25 * run.config.connections) if short else CONNECTIONS,
        )
    )
    duration = float(
        os.environ.get("BENCH_LAUNCH_SECONDS", run.config.duration if short else SECONDS)
    )
    asyncio.run(shop.create_database(run.server_url, run.database("launch"), template=run.api_db))
    with runner._api_server(run, suffix="launch", worker=True) as (port, sampler, _worker):
        run.say(
            f"launch: {connections} connections, {duration:.0f} s, "
            f"{1 - ORDER_SHARE:.0%} product reads / {ORDER_SHARE:.0%} orders (wrk)"
        )
        with sampler.running():
            figures = run_mixed(
                f"http://{runner.HOST}:{port}",
                tokens=run.shop.tokens,
                product_ids=run.shop.product_ids,
                prefix=f"launch-{run.run_id}",
                connections=connections,
                duration=duration,
            )
        figures["api_peak_rss_mb"] = round(sampler.peak / 2**20, 1)
    figures["meets_targets"] = meets_targets(figures)
    run.measurements["launch"] = figures
    run.say(
        f"  {figures['rps']:,.0f} rps, error rate {figures['error_rate']:.2%} "
        f"(statuses {figures['statuses']}, socket errors {figures['socket_errors']}), "
        f"p99 {figures['p99_ms']:.0f} ms — targets < 1 %, < 1,000 ms: "
        f"{'met' if figures['meets_targets'] else 'missed'}"
    )
