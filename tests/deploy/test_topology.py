"""PRODUCT.md §7, proven: HAProxy → two `orderly api`, two `orderly worker`, PgBouncer, Redis.

Under steady load through HAProxy (80 % product reads, 20 % orders):

1. each API in turn gets SIGTERM → its /readyz answers 503 → HAProxy takes it out →
   it drains and exits 0 → it starts again: **no client request fails**;
2. a worker is SIGKILLed and PostgreSQL (a private cluster) is restarted: **every
   acknowledged order (201) is in the database** and its confirmation e-mail
   arrives, each Message-ID at most twice (a job re-run after a lost
   acknowledgement sends the same Message-ID again: receivers de-duplicate) and
   never zero.

The figures are printed (``-s``) and asserted. The deploy/ configs are the ones used.
"""

from __future__ import annotations

import asyncio
import collections
import os
import random
import re
import secrets
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import asyncpg
import httpx
import pytest
from benchmarks import shop

from tests.deploy.topology import Topology, answers, missing_tools, wait_for
from tests.support.receivers import SmtpServer

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

pytestmark = pytest.mark.slow

CLIENTS = 12


@dataclass
class Load:
    """Closed-loop clients through HAProxy; every outcome is recorded by phase."""

    base_url: str
    tokens: list[str]
    product_ids: list[str]
    phase: str = "warm-up"
    sent: collections.Counter[str] = field(default_factory=collections.Counter)
    failed: dict[str, list[str]] = field(default_factory=lambda: collections.defaultdict(list))
    acknowledged: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    async def _client(self, n: int) -> None:
        rng = random.Random(n)
        async with httpx.AsyncClient(base_url=self.base_url, timeout=15) as client:
            while not self._stop.is_set():
                phase = self.phase
                self.sent[phase] += 1
                try:
                    if rng.random() < 0.8:
                        response = await client.get(f"/v1/products/{rng.choice(self.product_ids)}")
                        ok = response.status_code == 200
                    else:
                        a, b = rng.sample(self.product_ids, 2)
                        response = await client.post(
                            "/v1/orders",
                            json={
                                "items": [
                                    {"product_id": a, "quantity": 1},
                                    {"product_id": b, "quantity": 1},
                                ],
                                "shipping_address": shop.ADDRESS,
                            },
                            headers={
                                "Authorization": f"Bearer {rng.choice(self.tokens)}",
                                "Idempotency-Key": uuid.uuid4().hex,
                            },
                        )
                        ok = response.status_code == 201
                        if ok:
                            self.acknowledged.append(response.json()["id"])
                    if not ok:
                        self.failed[phase].append(f"{response.status_code} {response.text[:120]}")
                except httpx.HTTPError as exc:
                    self.failed[phase].append(f"{type(exc).__name__}: {exc}")

    def start(self) -> None:
        async def main() -> None:
            await asyncio.gather(*(self._client(n) for n in range(CLIENTS)))

        self._thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)


@pytest.fixture
def topology(redis_url: str) -> Iterator[tuple[Topology, SmtpServer]]:
    if missing := missing_tools():
        if os.environ.get("CI"):
            pytest.fail(f"the topology test needs {', '.join(missing)} (.ci/run installs them)")
        pytest.skip(f"needs {', '.join(missing)}: apt-get install haproxy pgbouncer")
    smtp = SmtpServer()
    smtp.start()
    topo = Topology(
        redis_url=redis_url,
        smtp_url=smtp.url,
        secrets={
            "ORDERLY_JWT_SECRET": secrets.token_urlsafe(48),
            "ORDERLY_ENCRYPTION_KEYS": secrets.token_urlsafe(32),
        },
    )
    try:
        topo.start_postgres()
        topo.start_pgbouncer()
        topo.migrate()
        yield topo, smtp
        if topo.failed:
            raise AssertionError("the test failed")
    except BaseException:
        for name in ("api0", "api1", "worker0", "worker1", "haproxy", "pgbouncer"):
            print(f"--- {name}\n{topo.log_tail(name)}")  # noqa: T201 - the failure's context
        raise
    finally:
        topo.stop()
        smtp.stop()


async def _orders_in_db(url: str, ids: list[str]) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM sales_order WHERE id = ANY($1::uuid[])",
                [uuid.UUID(i) for i in ids],
            )
        )
    finally:
        await conn.close()


async def _jobs(url: str) -> list[tuple[str, str, int]]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT entrypoint, status::text, count(*) FROM pgqueuer GROUP BY 1, 2 ORDER BY 1, 2"
        )
        return [(r[0], r[1], r[2]) for r in rows]
    finally:
        await conn.close()


def test_rolling_restart_worker_kill_and_database_restart(
    topology: tuple[Topology, SmtpServer],
) -> None:
    topo, smtp = topology
    topo.failed = True  # until the end is reached: the fixture prints the logs
    started = time.monotonic()
    built = asyncio.run(
        shop.build_shop(topo.env(ORDERLY_DATABASE_URL=topo.direct_url), users=4, products=20)
    )
    for i in (0, 1):
        topo.start_api(i)
        topo.start_worker(i)
    topo.start_haproxy()

    load = Load(topo.base_url, built.tokens, built.product_ids)
    load.start()
    try:
        time.sleep(3)
        # 1. Rolling restart: SIGTERM → /readyz 503 → out of the balancer → drain → exit 0 → start.
        load.phase = "rolling restart"
        for i in (0, 1):
            proc, port = topo.apis[i], topo.api_ports[i]
            assert proc is not None
            proc.send_signal(signal.SIGTERM)
            wait_for(lambda port=port: answers(f"http://127.0.0.1:{port}/readyz", 503), 5, "503")
            assert proc.wait(45) == 0, topo.log_tail(f"api{i}")
            topo.start_api(i)
            wait_for(lambda: answers(f"{topo.base_url}/readyz"), 10, "balancer")
            time.sleep(1.5)  # HAProxy marks it up again (rise 2 × 300 ms) and traffic returns
        # 2. Faults: a worker SIGKILLed, then PostgreSQL restarted under load.
        load.phase = "faults"
        worker = topo.workers[0]
        assert worker is not None
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        time.sleep(1)
        topo.supervise()  # the unit's Restart=always
        topo.pg_ctl("restart")
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            topo.supervise()
            time.sleep(0.5)
        load.phase = "after"
        time.sleep(2)
    finally:
        load.stop()

    acknowledged = list(load.acknowledged)
    fault_answers = collections.Counter(f.split(" ", 1)[0] for f in load.failed["faults"])
    found = asyncio.run(_orders_in_db(topo.direct_url, acknowledged))

    wanted = set(acknowledged)

    def mailed() -> dict[str, collections.Counter[str]]:
        by_order: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        for message in smtp.messages:
            for order_id in _UUID.findall(str(message.get("Subject", ""))):
                if order_id in wanted:
                    by_order[order_id][str(message["Message-ID"])] += 1
        return by_order

    def all_mailed() -> bool:
        topo.supervise()
        return len(mailed()) == len(acknowledged)

    try:
        wait_for(all_mailed, 60, "every confirmation e-mail")
    except AssertionError:
        by_order = mailed()
        missing = [o for o in acknowledged if o not in by_order]
        print(f"not e-mailed: {missing[:5]}; jobs: {asyncio.run(_jobs(topo.direct_url))}")  # noqa: T201
        raise
    finally:
        by_order = mailed()
        duplicates = sum(1 for ids in by_order.values() for n in ids.values() if n > 1)
        print(  # noqa: T201 - the figures of the closing note
            f"\ntopology: requests sent {dict(load.sent)}, failed "
            f"{ {k: len(v) for k, v in load.failed.items()} } "
            f"(answers {dict(fault_answers)}), "
            f"orders acknowledged "
            f"{len(acknowledged)}, found {found}, e-mailed {len(by_order)} "
            f"(duplicate Message-IDs {duplicates}), worker restarts {topo.restarts}, "
            f"{time.monotonic() - started:.0f} s"
        )
    assert load.sent["rolling restart"] > 100
    assert load.failed["rolling restart"] == [], load.failed["rolling restart"][:5]
    # While PostgreSQL restarts the answer is 503 overloaded with Retry-After, never a 500.
    assert set(fault_answers) <= {"503"}, fault_answers
    assert acknowledged
    assert found == len(acknowledged)
    for order_id, ids in by_order.items():
        assert len(ids) == 1, (order_id, ids)  # one Message-ID per confirmation
        assert max(ids.values()) <= 2, (order_id, ids)
    # Public product reads come from HAProxy's cache within their max-age (deploy/haproxy.cfg);
    # a request with credentials is never served from it, and its answer says no-store.
    product_url = f"{topo.base_url}/v1/products/{built.product_ids[0]}"
    fresh = httpx.get(product_url, timeout=5)
    assert fresh.headers["cache-control"] == "public, max-age=2"
    assert httpx.get(product_url, timeout=5).headers.get("x-cache") == "hit"
    private = httpx.get(
        product_url, headers={"Authorization": f"Bearer {built.tokens[0]}"}, timeout=5
    )
    assert private.status_code == 200
    assert "x-cache" not in private.headers
    assert private.headers["cache-control"] == "no-store"
    launch_seconds = os.environ.get("ORDERLY_TOPOLOGY_LAUNCH_SECONDS")
    if launch_seconds:  # the launch load through HAProxy, for the figures (not in CI)
        from benchmarks import launch

        figures = launch.run_mixed(
            topo.base_url,
            tokens=built.tokens,
            product_ids=built.product_ids,
            prefix=f"topology-{uuid.uuid4().hex[:6]}",
            duration=float(launch_seconds),
        )
        print(f"launch through HAProxy: {figures}")  # noqa: T201
    topo.failed = False
