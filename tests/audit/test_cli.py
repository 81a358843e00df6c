"""``orderly audit verify``: exit 0 when the chain is intact, 1 naming the first broken event."""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg
import pytest

from orderly.audit import service
from orderly.audit.schemas import AuditContext
from orderly.core.db import Database
from tests.support.cli import run_orderly


@pytest.mark.slow
async def test_verify_passes_then_names_the_edited_event(
    database: Database, database_url: str, raw_db: asyncpg.Connection, tmp_path: Path
) -> None:
    for i in range(5):
        async with database.transaction() as tx:
            await service.record(
                tx,
                AuditContext(actor_id=uuid.uuid4(), actor_role="admin"),
                "user.role_changed",
                target_id=str(i),
                details={"from": "customer", "to": "staff"},
            )
            await tx.commit()

    intact = run_orderly("audit", "verify", database_url=database_url, data_dir=tmp_path)
    assert intact.returncode == 0, intact.stderr
    assert "intact: 5 events" in intact.stdout
    assert "ledger balanced" in intact.stdout

    edited = await raw_db.fetchval("SELECT id FROM audit_event WHERE seq = 3")
    async with raw_db.transaction():
        await raw_db.execute("SET LOCAL session_replication_role = replica")
        await raw_db.execute(
            """UPDATE audit_event SET details = '{"from": "customer", "to": "admin"}'
               WHERE seq = 3"""
        )
    broken = run_orderly("audit", "verify", database_url=database_url, data_dir=tmp_path)
    assert broken.returncode == 1
    assert str(edited) in broken.stderr
    assert "seq 3" in broken.stderr
