"""HTTP load generation: ``wrk`` with a Lua script when installed, else a Python client.

Two shapes of load:

* closed loop (``closed_loop``): N keep-alive connections, each sending its next
  request as soon as the previous answer arrives — the maximum throughput;
* open loop (``open_loop``): requests *scheduled* at a fixed rate whatever the
  server does, latency measured from the scheduled send time, so a stalled
  server cannot hide its queueing delay (no coordinated omission). Always the
  Python client: stock ``wrk`` has no constant-rate mode.

The Python client speaks just enough HTTP/1.1 (keep-alive, Content-Length or
chunked bodies) to stay cheap; it runs in several processes for the closed loop.
Load generator and server share the machine's cores (MEASUREMENTS.md).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import multiprocessing
import os
import random
import re
import shutil
import subprocess
import tempfile
import time
from array import array
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

LoadTool = Literal["auto", "wrk", "python"]


@dataclass(frozen=True)
class GetPlan:
    """The same GET request over and over."""

    path: str


@dataclass(frozen=True)
class OrderPlan:
    """``POST /v1/orders``: random distinct products, round-robin users, a fresh Idempotency-Key."""

    tokens: tuple[str, ...]
    product_ids: tuple[str, ...]
    address_json: str
    key_prefix: str
    items_per_order: int = 2
    idempotency: bool = True
    path: str = "/v1/orders"


@dataclass(frozen=True)
class PayPlan:
    """``POST /v1/orders/{id}/pay`` with credits: each order once, by its owner.

    ``orders`` holds (token index, order id) pairs; a closed loop stops a
    connection once its share is used up (an order can be paid only once).
    """

    tokens: tuple[str, ...]
    orders: tuple[tuple[int, str], ...]
    key_prefix: str
    idempotency: bool = True
    body: bytes = b'{"method":"credits"}'


Plan = GetPlan | OrderPlan | PayPlan


@dataclass
class LoadResult:
    """What one pass measured (latencies in milliseconds)."""

    tool: str
    duration_s: float
    requests: int
    statuses: dict[int, int]
    socket_errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    target_rps: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        """Completed requests per second (any status)."""
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def ok(self) -> int:
        """2xx responses."""
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)

    @property
    def ok_rps(self) -> float:
        """2xx responses per second: the throughput that counts."""
        return self.ok / self.duration_s if self.duration_s else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly view."""
        return {
            "tool": self.tool,
            "duration_s": round(self.duration_s, 3),
            "requests": self.requests,
            "ok": self.ok,
            "rps": round(self.rps, 1),
            "ok_rps": round(self.ok_rps, 1),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "socket_errors": self.socket_errors,
            "p50_ms": round(self.p50_ms, 3),
            "p95_ms": round(self.p95_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "max_ms": round(self.max_ms, 3),
            "target_rps": None if self.target_rps is None else round(self.target_rps, 1),
            **self.extra,
        }


def percentile(sorted_values: list[float] | array[float], p: float) -> float:
    """Nearest-rank percentile of an ascending sequence (0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


def wrk_binary() -> str | None:
    """Path of ``wrk`` if installed."""
    return shutil.which("wrk")


def choose_tool(requested: LoadTool) -> Literal["wrk", "python"]:
    """``auto`` picks wrk when installed; asking for wrk without it is an error."""
    if requested == "python":
        return "python"
    if wrk_binary() is not None:
        return "wrk"
    if requested == "wrk":
        raise RuntimeError("wrk is not installed (apt-get install wrk), use --loadgen python")
    return "python"


# ---------------------------------------------------------------- request bytes


def _order_body(plan: OrderPlan, rng: random.Random) -> bytes:
    count = min(plan.items_per_order, len(plan.product_ids))
    chosen = rng.sample(plan.product_ids, count)
    items = ",".join(f'{{"product_id":"{pid}","quantity":1}}' for pid in chosen)
    return f'{{"items":[{items}],"shipping_address":{plan.address_json}}}'.encode()


class RequestFactory:
    """Builds the raw bytes of request *i* (bodies and keys vary for orders)."""

    def __init__(self, plan: Plan, host: str, port: int, seed: int, worker: int) -> None:
        self.plan = plan
        self.host = f"{host}:{port}"
        self.rng = random.Random(seed)
        self.worker = worker
        if isinstance(plan, GetPlan):
            self._fixed: bytes | None = (
                f"GET {plan.path} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode()
            )
        else:
            self._fixed = None

    def make(self, i: int) -> bytes | None:
        """The bytes of request number *i* of this worker (None: a pay plan is used up)."""
        if self._fixed is not None:
            return self._fixed
        plan = self.plan
        if isinstance(plan, PayPlan):
            if i >= len(plan.orders):
                return None
            token_index, order_id = plan.orders[i]
            key = (
                f"Idempotency-Key: {plan.key_prefix}-{self.worker}-{i}\r\n"
                if plan.idempotency
                else ""
            )
            return (
                f"POST /v1/orders/{order_id}/pay HTTP/1.1\r\nHost: {self.host}\r\n"
                f"Authorization: Bearer {plan.tokens[token_index]}\r\n"
                f"Content-Type: application/json\r\n"
                f"{key}Content-Length: {len(plan.body)}\r\n\r\n"
            ).encode() + plan.body
        assert isinstance(plan, OrderPlan)
        body = _order_body(plan, self.rng)
        token = plan.tokens[(i + self.worker) % len(plan.tokens)]
        key = (
            f"Idempotency-Key: {plan.key_prefix}-{self.worker}-{i}\r\n" if plan.idempotency else ""
        )
        head = (
            f"POST {plan.path} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            f"{key}Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body


# ---------------------------------------------------------------- python client

_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


class _Conn:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, data: bytes) -> int:
        """Send one request and read the whole response; returns the status code."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(data)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        match = _CONTENT_LENGTH.search(head)
        lower = head.lower()
        if match is not None:
            await self.reader.readexactly(int(match.group(1)))
        elif b"transfer-encoding: chunked" in lower:
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        if b"connection: close" in lower:
            self.close()
        return status

    def close(self) -> None:
        """Drop the connection (the next request reconnects)."""
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


_T = TypeVar("_T")


def run_uvloop(main: Coroutine[Any, Any, _T]) -> _T:
    """Run *main* on a fresh uvloop loop without touching the process's event-loop policy.

    Setting the policy would leak into whatever runs next in this process (a test
    runner's later tests inherit it), so the loop comes from a factory instead.
    """
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


async def _closed_loop_async(
    plan: Plan, host: str, port: int, connections: int, start_at: float, duration: float, seed: int
) -> tuple[bytes, dict[int, int], int, float]:
    factory = RequestFactory(plan, host, port, seed, worker=seed)
    latencies = array("d")
    statuses: Counter[int] = Counter()
    errors = 0
    await asyncio.sleep(max(0.0, start_at - time.time()))
    # perf_counter, not loop.time(): uvloop's clock has millisecond resolution.
    began = time.perf_counter()
    deadline = began + duration

    async def one_connection(index: int) -> None:
        nonlocal errors
        conn = _Conn(host, port)
        i = index
        while time.perf_counter() < deadline:
            data = factory.make(i)
            if data is None:
                break
            i += connections
            sent = time.perf_counter()
            try:
                status = await conn.request(data)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                errors += 1
                conn.close()
                await asyncio.sleep(0.01)
                continue
            latencies.append(time.perf_counter() - sent)
            statuses[status] += 1
        conn.close()

    await asyncio.gather(*(one_connection(k) for k in range(connections)))
    return latencies.tobytes(), dict(statuses), errors, time.perf_counter() - began


def _closed_loop_process(args: tuple[Any, ...]) -> tuple[bytes, dict[int, int], int, float]:
    return run_uvloop(_closed_loop_async(*args))


def _share(plan: Plan, k: int, processes: int) -> Plan:
    """Process *k*'s part of *plan*: pay plans are split so no order is paid twice."""
    if isinstance(plan, PayPlan):
        return dataclasses.replace(plan, orders=plan.orders[k::processes])
    return plan


def _python_closed_loop(
    plan: Plan, host: str, port: int, connections: int, duration: float, processes: int
) -> LoadResult:
    processes = max(1, min(processes, connections))
    shares = [
        connections // processes + (1 if k < connections % processes else 0)
        for k in range(processes)
    ]
    start_at = time.time() + 1.0  # every process starts sending at the same instant
    salt = random.randrange(1 << 30)
    jobs = [
        (_share(plan, k, processes), host, port, share, start_at, duration, salt + k)
        for k, share in enumerate(shares)
    ]
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as pool:
        parts = pool.map(_closed_loop_process, jobs)
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors = 0
    elapsed = 0.0
    for raw, part_statuses, part_errors, part_elapsed in parts:
        chunk = array("d")
        chunk.frombytes(raw)
        latencies.extend(chunk)
        statuses.update(part_statuses)
        errors += part_errors
        elapsed = max(elapsed, part_elapsed)
    return _result(
        f"python ({processes} proc, {connections} conn)", latencies, statuses, errors, elapsed
    )


def _result(
    tool: str,
    latencies_s: list[float],
    statuses: Counter[int] | dict[int, int],
    errors: int,
    elapsed: float,
    target_rps: float | None = None,
) -> LoadResult:
    ms = sorted(x * 1000 for x in latencies_s)
    return LoadResult(
        tool=tool,
        duration_s=elapsed,
        requests=len(ms),
        statuses=dict(statuses),
        socket_errors=errors,
        p50_ms=percentile(ms, 50),
        p95_ms=percentile(ms, 95),
        p99_ms=percentile(ms, 99),
        max_ms=ms[-1] if ms else 0.0,
        target_rps=target_rps,
    )


async def _open_loop_async(
    plan: Plan, host: str, port: int, rate: float, duration: float, connections: int
) -> LoadResult:
    factory = RequestFactory(plan, host, port, random.randrange(1 << 30), worker=0)
    idle: asyncio.Queue[_Conn] = asyncio.Queue()
    for _ in range(connections):
        idle.put_nowait(_Conn(host, port))
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors = 0
    late = 0

    async def one(i: int, scheduled: float) -> None:
        nonlocal errors
        data = factory.make(i)
        if data is None:
            raise RuntimeError("the open loop ran out of orders to pay")
        conn = await idle.get()
        try:
            status = await conn.request(data)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            errors += 1
            conn.close()
            return
        finally:
            idle.put_nowait(conn)
        latencies.append(time.perf_counter() - scheduled)  # from the *scheduled* instant
        statuses[status] += 1

    total = max(1, int(rate * duration))
    began = time.perf_counter() + 0.05
    tasks: set[asyncio.Task[None]] = set()
    for i in range(total):
        scheduled = began + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.005:
            late += 1
        task = asyncio.create_task(one(i, scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    sent_by = time.perf_counter()
    while tasks:
        await asyncio.wait(set(tasks), timeout=30)
        if time.perf_counter() - sent_by > 30:
            break
    elapsed = time.perf_counter() - began
    while not idle.empty():
        idle.get_nowait().close()
    result = _result(
        f"python open loop ({connections} conn)", latencies, statuses, errors, elapsed, rate
    )
    result.extra["sent_late_fraction"] = round(late / total, 4)
    result.extra["send_window_s"] = round(sent_by - began, 3)
    return result


def open_loop(
    plan: Plan, host: str, port: int, rate: float, duration: float, connections: int
) -> LoadResult:
    """Send at *rate* req/s for *duration* seconds; latency counted from the scheduled time."""

    async def main() -> LoadResult:
        return await _open_loop_async(plan, host, port, rate, duration, connections)

    return run_uvloop(main())


# ---------------------------------------------------------------- wrk

_WRK_COMMON = r"""
local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
function done(summary, latency, requests)
  local agg = {}
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    if s then
      for k, v in pairs(s) do agg[k] = (agg[k] or 0) + v end
    end
  end
  local parts = {}
  for k, v in pairs(agg) do table.insert(parts, '"' .. k .. '":' .. v) end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"duration_us":%d,"requests":%d,"p50":%d,"p95":%d,"p99":%d,"max":%d,' ..
    '"socket_errors":%d,"statuses":{%s}}\n',
    summary.duration, summary.requests, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency.max, e.connect + e.read + e.write + e.timeout,
    table.concat(parts, ",")))
end
"""

_WRK_GET = r"""
local path = "%(path)s"
function init(args)
  statuses = {}
  req = wrk.format("GET", path)
end
function request()
  return req
end
"""

_WRK_ORDER = r"""
local tokens = {%(tokens)s}
local products = {%(products)s}
local address = '%(address)s'
local prefix = "%(prefix)s"
local per_order = %(per_order)d
local use_key = %(use_key)s
local counter = 0
function init(args)
  statuses = {}
  math.randomseed(tid * 7919 + os.time())
end
function request()
  counter = counter + 1
  local n = #products
  local a = math.random(n)
  local items = '{"product_id":"' .. products[a] .. '","quantity":1}'
  if per_order > 1 and n > 1 then
    local b = (a + math.random(n - 1) - 1) %% n + 1
    items = items .. ',{"product_id":"' .. products[b] .. '","quantity":1}'
  end
  local body = '{"items":[' .. items .. '],"shipping_address":' .. address .. '}'
  local headers = {}
  headers["Content-Type"] = "application/json"
  headers["Authorization"] = "Bearer " .. tokens[(counter + tid) %% #tokens + 1]
  if use_key then
    headers["Idempotency-Key"] = prefix .. "-" .. tid .. "-" .. counter
  end
  return wrk.format("POST", "%(path)s", headers, body)
end
"""


def _lua_list(values: tuple[str, ...]) -> str:
    return ", ".join(f'"{value}"' for value in values)


def wrk_script(plan: Plan) -> str:
    """The Lua script that makes wrk send *plan* and print a JSON summary."""
    if isinstance(plan, PayPlan):
        raise ValueError("pay plans run on the Python client (each order is paid once)")
    if isinstance(plan, GetPlan):
        body = _WRK_GET % {"path": plan.path}
    else:
        if plan.items_per_order > 2:
            raise ValueError("the wrk script sends at most two items per order")
        body = _WRK_ORDER % {
            "tokens": _lua_list(plan.tokens),
            "products": _lua_list(plan.product_ids),
            "address": plan.address_json.replace("\\", "\\\\").replace("'", "\\'"),
            "prefix": plan.key_prefix,
            "per_order": plan.items_per_order,
            "use_key": "true" if plan.idempotency else "false",
            "path": plan.path,
        }
    return body + _WRK_COMMON


def _wrk_closed_loop(
    plan: Plan, host: str, port: int, connections: int, duration: float, threads: int
) -> LoadResult:
    binary = wrk_binary()
    assert binary is not None
    threads = max(1, min(threads, connections))
    with tempfile.TemporaryDirectory(prefix="orderly-wrk-") as tmp:
        script = Path(tmp) / "plan.lua"
        script.write_text(wrk_script(plan), encoding="utf-8")
        command = [
            binary,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            f"http://{host}:{port}",
        ]
        done = subprocess.run(  # bounded by wrk's own -d plus a margin
            command, capture_output=True, text=True, timeout=duration + 60, check=False
        )
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()[:300]}")
    data = json.loads(line.removeprefix("WRK_JSON "))
    return LoadResult(
        tool=f"wrk ({threads} threads, {connections} conn)",
        duration_s=data["duration_us"] / 1e6,
        requests=data["requests"],
        statuses={int(k): v for k, v in data["statuses"].items()},
        socket_errors=data["socket_errors"],
        p50_ms=data["p50"] / 1000,
        p95_ms=data["p95"] / 1000,
        p99_ms=data["p99"] / 1000,
        max_ms=data["max"] / 1000,
    )


def closed_loop(
    plan: Plan,
    host: str,
    port: int,
    *,
    connections: int,
    duration: float,
    tool: Literal["wrk", "python"],
    threads: int = 2,
) -> LoadResult:
    """Maximum throughput: *connections* keep-alive connections for *duration* seconds.

    A :class:`PayPlan` always runs on the Python client: stock wrk cannot hand each
    order to exactly one request.
    """
    if tool == "wrk" and not isinstance(plan, PayPlan):
        return _wrk_closed_loop(plan, host, port, connections, duration, threads)
    return _python_closed_loop(plan, host, port, connections, duration, threads)


def cpu_count() -> int:
    """Cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
