"""Schemathesis against a real `orderly api`: every operation, as customer, staff and admin.

Valid and invalid data (examples, coverage and fuzzing phases), every check
schemathesis has. The run must find no server error and no status, content-type,
header or schema non-conformance. Two routes are left to targeted tests
(tests/accounts): logout ends the very session the fuzzer uses, and a role
change could demote it. Figures are printed (``pytest -s``) and kept in the
JSON reports under the test's tmp dir.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from orderly.accounts.schemas import Role
from orderly.config import Settings
from orderly.core.db import Database
from tests.flags.test_processes import orderly, orderly_env
from tests.support.accounts import SignedInUser, signed_in
from tests.support.shop import create_product, fund_wallet, order_body, pay_with_credits
from tests.test_serve import free_port, wait_ready

CONFIG = Path(__file__).with_name("schemathesis.toml")
EXCLUDED = ("/v1/auth/logout", "/v1/users/{user_id}/role")
EXAMPLES_PER_OPERATION = 10

pytestmark = pytest.mark.slow


def schemathesis(base: str, user: SignedInUser, report: Path) -> dict[str, Any]:
    """One `st run` as *user*; returns its JSON report."""
    st = Path(sys.executable).with_name("st")
    command = [
        str(st),
        "--config-file",
        str(CONFIG),
        "run",
        f"{base}/openapi.json",
        "--header",
        f"Authorization: Bearer {user.access_token}",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(EXAMPLES_PER_OPERATION),
        "--workers",
        "1",  # hypothesis' lambda-source cache is not thread-safe on Python 3.11
        "--seed",
        "20261202",
        "--request-timeout",
        "20",
        "--report",
        "json",
        "--report-json-path",
        str(report),
        "--output-truncate",
        "true",
    ]
    for path in EXCLUDED:
        command += ["--exclude-path", path]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    (report.with_suffix(".out")).write_text(run.stdout + run.stderr)
    document: dict[str, Any] = json.loads(report.read_text())
    assert document["complete"], run.stdout[-3000:]
    return document


async def _seed(client: httpx.AsyncClient, staff: SignedInUser, customer: SignedInUser,
                admin: SignedInUser) -> None:  # fmt: skip
    """Real rows behind the list and read routes, so their responses are checked too."""
    product = await create_product(client, staff.headers, stock=50)
    order = await client.post(
        "/v1/orders", json=order_body((product["id"], 2)), headers=customer.headers
    )
    assert order.status_code == 201, order.text
    await fund_wallet(client, admin.headers, customer.id, 10_000)
    assert (await pay_with_credits(client, order.json()["id"], customer.headers)).status_code == 200
    flag = {"name": "checkout.express", "enabled": True, "strategies": [{"name": "default"}]}
    put = await client.put("/v1/admin/flags/checkout.express", json=flag, headers=admin.headers)
    assert put.status_code in (200, 201), put.text
    incident = {"title": "Checkout slow", "severity": "SEV3"}
    assert (
        await client.post("/v1/admin/incidents", json=incident, headers=staff.headers)
    ).status_code == 201


async def test_schemathesis_finds_no_failure_as_customer_staff_or_admin(
    client: httpx.AsyncClient,
    database: Database,
    settings: Settings,
    database_url: str,
    tmp_path: Path,
) -> None:
    users = {role: await signed_in(client, database, settings, role) for role in Role}
    await _seed(client, users[Role.staff], users[Role.customer], users[Role.admin])
    port = free_port()
    env = orderly_env(
        settings,
        database_url,
        tmp_path,
        ORDERLY_PORT=str(port),
        # The fuzzer sends thousands of requests a minute: limits would answer most of them.
        ORDERLY_ORDER_RATE_LIMIT="100000/minute",
        ORDERLY_LOGIN_RATE_LIMIT="100000/minute",
    )
    base = f"http://127.0.0.1:{port}"
    figures = []
    with orderly("api", env, tmp_path) as api:
        await asyncio.to_thread(wait_ready, base, api)
        for role, user in users.items():
            report = tmp_path / f"schemathesis-{role.value}.json"
            document = await asyncio.to_thread(schemathesis, base, user, report)
            cases = document["test_cases"]
            figures.append(
                f"{role.value}: {document['operations']['tested']} operations, "
                f"{cases['generated']} cases, {cases['unique_failures']} failures, "
                f"{len(document['errors'])} errors"
            )
            failures = [
                f"{failure['code']} {failure['title']}: {failure['operations']}"
                for failure in document["failures"]
            ]
            assert not failures, (
                f"{role.value}: {failures}\n" + report.with_suffix(".out").read_text()[-6000:]
            )
            assert not document["errors"], report.with_suffix(".out").read_text()[-6000:]
            assert document["operations"]["tested"] == document["operations"]["selected"]
    print("\nschemathesis:", "; ".join(figures))  # noqa: T201 - the figures, with -s
