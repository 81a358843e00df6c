"""The README's "A first order, by hand" works as written, and `orderly demo` loads a shop."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from orderly import migrate
from tests.support.cli import run_orderly
from tests.support.db import create_database, drop_database, server_url
from tests.test_serve import free_port, wait_ready

README = Path(__file__).resolve().parents[1] / "README.md"
# `./dev orderly ARGS` installs the pinned dependencies once, then runs `orderly ARGS`:
# here the dependencies are installed already, so the stand-in only does the second part.
DEV_STAND_IN = f'#!/bin/sh\nshift\nexec "{sys.executable}" -m orderly "$@"\n'

pytestmark = pytest.mark.slow


def first_order_block() -> str:
    """The shell block after the README's ``<!-- first-order -->`` marker, verbatim."""
    match = re.search(r"<!-- first-order -->\n```sh\n(.*?)\n```", README.read_text(), re.S)
    assert match, "README.md lost its first-order block"
    return match.group(1)


@pytest.fixture
def scratch_database_url(pg_server_url: str) -> Iterator[str]:
    """A fresh database of this test's own (the README's shop, left as the block leaves it)."""
    name = f"orderly_readme_{uuid.uuid4().hex[:10]}"
    create_database(pg_server_url, name)
    yield server_url(pg_server_url, name)
    drop_database(pg_server_url, name)


def test_the_first_order_block_runs_as_written(scratch_database_url: str, tmp_path: Path) -> None:
    (tmp_path / "dev").write_text(DEV_STAND_IN)
    (tmp_path / "dev").chmod(0o755)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERLY_")}
    env.update(
        ORDERLY_DATABASE_URL=scratch_database_url,
        ORDERLY_DATA_DIR=str(tmp_path / ".orderly"),
        ORDERLY_PORT=str(port),
        ORDERLY_LOG_LEVEL="WARNING",
    )
    log = (tmp_path / "serve.log").open("wb")
    serve = subprocess.Popen(
        [sys.executable, "-m", "orderly", "serve"],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}", serve)
        block = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", first_order_block()],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
    finally:
        serve.terminate()
        serve.wait(30)
        log.close()
    assert block.returncode == 0, block.stdout + block.stderr
    lines = block.stdout.splitlines()
    assert "paid" in lines
    mails = [Path(tmp_path, line) for line in lines if "/maildir/new/" in line]
    assert mails, block.stdout
    assert all(mail.is_file() for mail in mails)


def test_demo_loads_a_sample_shop_once(scratch_database_url: str, tmp_path: Path) -> None:
    url = scratch_database_url
    migrate.upgrade(url, "head")
    first = run_orderly("demo", database_url=url, data_dir=tmp_path)
    assert first.returncode == 0, first.stderr
    passwords = dict(re.findall(r"(\S+@demo\.orderly\.dev)\s+password: (\S+)", first.stdout))
    assert set(passwords) == {
        "staff@demo.orderly.dev",
        "admin@demo.orderly.dev",
        "ada@demo.orderly.dev",
    }
    again = run_orderly("demo", database_url=url, data_dir=tmp_path)
    assert again.returncode == 1
    assert "already" in again.stderr

    # The shop, seen through a real `orderly api` as its customer.
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERLY_")}
    env.update(ORDERLY_DATABASE_URL=url, ORDERLY_DATA_DIR=str(tmp_path), ORDERLY_PORT=str(port))
    api = subprocess.Popen(
        [sys.executable, "-m", "orderly", "api"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        base_url = f"http://127.0.0.1:{port}"
        wait_ready(base_url, api)
        with httpx.Client(base_url=base_url) as http:
            login = http.post(
                "/v1/auth/token",
                json={
                    "email": "ada@demo.orderly.dev",
                    "password": passwords["ada@demo.orderly.dev"],
                },
            )
            assert login.status_code == 200, login.text
            headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
            orders = http.get("/v1/orders", headers=headers).json()["data"]
            assert sorted(order["status"] for order in orders) == ["paid", "paid", "pending"]
            assert len(http.get("/v1/products").json()["data"]) == 4
    finally:
        api.terminate()
        api.wait(30)
