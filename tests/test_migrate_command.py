"""``orderly migrate downgrade`` asks first, and leaves running orderly processes their schema."""

from __future__ import annotations

import asyncio
import os
import pty
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest
from alembic.script import ScriptDirectory

from orderly import migrate
from tests.support.cli import run_orderly

pytestmark = pytest.mark.slow

_HEAD = ScriptDirectory.from_config(migrate.alembic_config("postgresql://unused/x")).get_revision(
    "head"
)
assert _HEAD is not None
PREVIOUS = str(_HEAD.down_revision)  # one step down from head


@pytest.fixture
def migrated_url(empty_database_url: str) -> str:
    """A database of this test's own at head."""
    migrate.upgrade(empty_database_url, "head")
    return empty_database_url


def _at_head(url: str) -> bool:
    return migrate.current(url).endswith("(head)")


def _at_previous(url: str) -> bool:
    return migrate.current(url) == PREVIOUS


@asynccontextmanager
async def _connected(url: str, *names: str) -> AsyncIterator[None]:
    """Sessions on *url* named like other processes would name them."""
    conns = [
        await asyncpg.connect(url, server_settings={"application_name": name}) for name in names
    ]
    try:
        yield
    finally:
        for conn in conns:
            await conn.close()


def test_without_a_terminal_it_needs_yes(migrated_url: str, tmp_path: Path) -> None:
    done = run_orderly(
        "migrate", "downgrade", PREVIOUS, database_url=migrated_url, data_dir=tmp_path
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [
        "orderly: migrate downgrade drops what later migrations added, data included: "
        "pass --yes to confirm (no terminal to ask on)"
    ]
    assert _at_head(migrated_url)


def test_with_yes_it_downgrades(migrated_url: str, tmp_path: Path) -> None:
    done = run_orderly(
        "migrate", "downgrade", PREVIOUS, "--yes", database_url=migrated_url, data_dir=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert _at_previous(migrated_url)
    assert f"database at {migrate.current(migrated_url)}" in done.stderr


async def test_it_refuses_while_orderly_processes_are_connected(
    migrated_url: str, tmp_path: Path
) -> None:
    async with _connected(migrated_url, "orderly-api", "orderly-api", "orderly-worker", "psql"):
        done = run_orderly(
            "migrate", "downgrade", PREVIOUS, "--yes", database_url=migrated_url, data_dir=tmp_path
        )
    assert done.returncode == 1, done.stderr
    name = migrate.database_name(migrated_url)
    assert done.stderr.strip().splitlines() == [
        f"orderly: not downgrading {name}: 3 other orderly session(s) connected "
        "(orderly-api x2, orderly-worker x1); stop those processes or pass --force"
    ]
    assert await asyncio.to_thread(_at_head, migrated_url)


async def test_force_downgrades_anyway(migrated_url: str, tmp_path: Path) -> None:
    async with _connected(migrated_url, "orderly-api"):
        done = run_orderly(
            "migrate", "downgrade", PREVIOUS, "--yes", "--force",
            database_url=migrated_url, data_dir=tmp_path,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert await asyncio.to_thread(_at_previous, migrated_url)


def _on_a_terminal(url: str, data_dir: Path, answer: str) -> subprocess.CompletedProcess[str]:
    """``orderly migrate downgrade PREVIOUS`` with a pseudo-terminal on stdin, typing *answer*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERLY_")}
    env.update(
        ORDERLY_DATABASE_URL=url, ORDERLY_DATA_DIR=str(data_dir), ORDERLY_LOG_LEVEL="WARNING"
    )
    controller, terminal = pty.openpty()
    try:
        os.write(controller, answer.encode() + b"\n")  # the line waits in the terminal's buffer
        return subprocess.run(
            [sys.executable, "-m", "orderly", "migrate", "downgrade", PREVIOUS],
            stdin=terminal,
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
    finally:
        os.close(terminal)
        os.close(controller)


@pytest.mark.parametrize("answer", ["downgrade", "the database name"])
def test_a_terminal_is_asked_to_type_the_database_name(
    migrated_url: str, tmp_path: Path, answer: str
) -> None:
    name = migrate.database_name(migrated_url)
    refused = _on_a_terminal(migrated_url, tmp_path, "yes")
    assert refused.returncode == 1, refused.stderr
    assert f"Type the database name ({name})" in refused.stderr
    assert refused.stderr.strip().endswith("orderly: downgrade not confirmed; nothing changed")
    assert _at_head(migrated_url)

    typed = name if answer == "the database name" else answer
    done = _on_a_terminal(migrated_url, tmp_path, typed)
    assert done.returncode == 0, done.stderr
    assert _at_previous(migrated_url)


def test_the_database_name_comes_from_the_url() -> None:
    assert migrate.database_name("postgresql://u@db:5432/shop") == "shop"
    assert migrate.database_name("postgresql://postgres:@/postgres?host=/tmp/pg") == "postgres"
    assert migrate.database_name("postgresql://u@db?dbname=shop") == "shop"
    assert migrate.database_name("postgresql://orderly@db") == "orderly"
