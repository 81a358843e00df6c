"""``orderly backup`` / ``orderly restore`` for real: pg_dump and pg_restore in subprocesses.

Backup → restore into a fresh database → the manifest matches, ``audit verify``
passes, wallet balances are equal; a non-empty target is refused (unless
``--force``); a corrupted or truncated file, a missing ``pg_dump`` and a
client older than the server each exit 1 with one line. On the external and
the embedded database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

import asyncpg
import pytest

from orderly.audit.schemas import AuditContext
from orderly.core.db import Database
from orderly.ledger import service as ledger
from tests.factories import make_product, make_user_row
from tests.support.cli import run_orderly

pytestmark = pytest.mark.slow


async def _populate(database: Database, raw_db: asyncpg.Connection) -> dict[uuid.UUID, int]:
    """Users with audited credit grants (audit chain + ledger) and a few products."""
    admin = await make_user_row(raw_db, "admin")
    balances: dict[uuid.UUID, int] = {}
    for i in range(4):
        user = await make_user_row(raw_db)
        async with database.transaction() as tx:
            await ledger.grant_credits_audited(
                tx,
                AuditContext(actor_id=admin, actor_role="admin"),
                user_id=user,
                amount_cents=1_000 * (i + 1),
                transaction_id=f"grant-{i}",
                reason="backup test",
            )
            await tx.commit()
        balances[user] = 1_000 * (i + 1)
    for _ in range(3):
        await make_product(database)
    return balances


async def _wallets(url: str) -> dict[uuid.UUID, int]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT user_id, balance_cents FROM ledger_account WHERE kind = 'wallet'"
        )
        return {r["user_id"]: r["balance_cents"] for r in rows}
    finally:
        await conn.close()


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("orderly:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


async def test_backup_restore_round_trip_and_refusals(
    database: Database,
    database_url: str,
    raw_db: asyncpg.Connection,
    empty_database_url: str,
    tmp_path: Path,
) -> None:
    balances = await _populate(database, raw_db)
    archive = tmp_path / "orderly.backup"
    made = run_orderly("backup", str(archive), database_url=database_url, data_dir=tmp_path)
    assert made.returncode == 0, made.stderr
    assert "backup: " in made.stderr  # progress
    with tarfile.open(archive) as tar:
        manifest_file = tar.extractfile("manifest.json")
        assert manifest_file is not None
        manifest = json.loads(manifest_file.read())
    assert manifest["schema_revision"]
    assert manifest["row_counts"]["public.ledger_entry"] > 0
    assert manifest["audit_head"]["seq"] >= 4
    assert manifest["ledger_head"]["wallets"] == 4

    target = empty_database_url
    restored = run_orderly("restore", str(archive), database_url=target, data_dir=tmp_path)
    assert restored.returncode == 0, restored.stderr
    assert "manifest matches" in restored.stdout
    assert f"audit chain intact: {manifest['audit_head']['seq']} events" in restored.stdout
    assert "ledger balanced" in restored.stdout
    assert await _wallets(target) == balances

    again = run_orderly("restore", str(archive), database_url=target, data_dir=tmp_path)
    assert again.returncode == 1
    assert "not empty" in _one_line(again)

    forced = run_orderly("restore", str(archive), "--force", database_url=target, data_dir=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert await _wallets(target) == balances

    # Damaged files are caught before the database is touched.
    data = archive.read_bytes()
    flipped = tmp_path / "flipped.backup"
    middle = len(data) // 3
    flipped.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :])
    truncated = tmp_path / "truncated.backup"
    truncated.write_bytes(data[: len(data) // 2])
    for broken in (flipped, truncated):
        result = run_orderly(
            "restore", str(broken), "--force", database_url=target, data_dir=tmp_path
        )
        assert result.returncode == 1
        assert "corrupted or truncated" in _one_line(result)

    # No pg_dump at all, then one older than the server: exit 1, one clear line.
    empty_bin = tmp_path / "no-bin"
    empty_bin.mkdir()
    missing = run_orderly(
        "backup",
        str(tmp_path / "x.backup"),
        database_url=database_url,
        data_dir=tmp_path,
        ORDERLY_PG_BIN_DIR=str(empty_bin),
    )
    assert missing.returncode == 1
    assert "pg_dump not found" in _one_line(missing)
    old_bin = tmp_path / "old-bin"
    old_bin.mkdir()
    fake = old_bin / "pg_dump"
    fake.write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 9.6.24'\n")
    fake.chmod(0o755)
    old = run_orderly(
        "backup",
        str(tmp_path / "y.backup"),
        database_url=database_url,
        data_dir=tmp_path,
        ORDERLY_PG_BIN_DIR=str(old_bin),
    )
    assert old.returncode == 1
    assert "version mismatch" in _one_line(old)
    assert not (tmp_path / "x.backup").exists()
    assert not (tmp_path / "y.backup").exists()


def _embedded(*args: str, data_dir: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERLY_")}
    env.update(ORDERLY_DATA_DIR=str(data_dir), ORDERLY_LOG_LEVEL="WARNING")
    return subprocess.run(
        [sys.executable, "-m", "orderly", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )


def test_backup_restore_on_the_embedded_database(tmp_path: Path) -> None:
    source, target = tmp_path / "source", tmp_path / "target"
    created = _embedded(
        "user",
        "create",
        "--email",
        "admin@example.test",
        "--role",
        "admin",
        "--password-stdin",
        data_dir=source,
        stdin="Backup-restore-passphrase-1\n",
    )
    assert created.returncode == 0, created.stderr
    archive = tmp_path / "embedded.backup"
    made = _embedded("backup", str(archive), data_dir=source)
    assert made.returncode == 0, made.stderr
    assert "pginstall" in made.stderr  # the wheel's own pg_dump, matching its server

    restored = _embedded("restore", str(archive), data_dir=target)
    assert restored.returncode == 0, restored.stderr
    assert "manifest matches" in restored.stdout
    assert "audit chain intact" in restored.stdout
    again = _embedded("restore", str(archive), data_dir=target)
    assert again.returncode == 1
    assert "not empty" in again.stderr
