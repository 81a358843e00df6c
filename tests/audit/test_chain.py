"""The audit log: append-only, hash-chained, linear under concurrency, tamper-evident."""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid

import asyncpg
import pytest

from orderly.audit import service
from orderly.audit.repository import AuditEventRow
from orderly.audit.schemas import AuditContext
from orderly.core.db import Database

CTX = AuditContext(
    actor_id=uuid.uuid4(), actor_role="admin", ip="192.0.2.1", user_agent="ua", request_id="r1"
)


async def record_many(database: Database, n: int, action: str = "test.action") -> None:
    for i in range(n):
        async with database.transaction() as tx:
            await service.record(
                tx, CTX, action, target_type="thing", target_id=str(i), details={"n": i}
            )
            await tx.commit()


async def verify(database: Database) -> service.ChainReport:
    async with database.transaction() as tx:
        return await service.verify_chain(tx)


async def test_events_chain_and_verify(database: Database, raw_db: asyncpg.Connection) -> None:
    assert (await verify(database)).ok  # an empty log is intact
    await record_many(database, 5)
    rows = await raw_db.fetch("SELECT seq, prev_hash, hash FROM audit_event ORDER BY seq")
    assert [r["seq"] for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0]["prev_hash"] == "0" * 64
    for earlier, later in itertools.pairwise(rows):
        assert later["prev_hash"] == earlier["hash"]
    report = await verify(database)
    assert report.ok
    assert report.checked == 5


async def test_rolled_back_events_vanish_with_their_transaction(
    database: Database, raw_db: asyncpg.Connection
) -> None:
    async with database.transaction() as tx:
        await service.record(tx, CTX, "test.rolled_back")
        await tx.rollback()
    await record_many(database, 1)
    assert await raw_db.fetchval("SELECT count(*) FROM audit_event") == 1
    assert (await verify(database)).ok


async def test_concurrent_appends_stay_one_linear_chain(
    database: Database, raw_db: asyncpg.Connection
) -> None:
    async def writer(i: int) -> None:
        async with database.transaction() as tx:
            await service.record(tx, CTX, "test.concurrent", target_id=str(i))
            await asyncio.sleep(0.005)  # hold the transaction open a little: maximise overlap
            await tx.commit()

    await asyncio.gather(*(writer(i) for i in range(40)))
    seqs = [r["seq"] for r in await raw_db.fetch("SELECT seq FROM audit_event ORDER BY seq")]
    assert seqs == list(range(1, 41))
    prevs = await raw_db.fetchval("SELECT count(DISTINCT prev_hash) FROM audit_event")
    assert prevs == 40  # no fork: every event has its own predecessor
    assert (await verify(database)).ok


async def test_updates_and_deletes_are_refused_by_the_database(
    database: Database, raw_db: asyncpg.Connection
) -> None:
    await record_many(database, 1)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await raw_db.execute("UPDATE audit_event SET action = 'x'")
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await raw_db.execute("DELETE FROM audit_event")


async def tamper(raw_db: asyncpg.Connection, sql: str, *args: object) -> None:
    """Edit history as a superuser would, bypassing the append-only trigger."""
    async with raw_db.transaction():
        await raw_db.execute("SET LOCAL session_replication_role = replica")
        await raw_db.execute(sql, *args)


async def test_an_edited_event_is_named(database: Database, raw_db: asyncpg.Connection) -> None:
    await record_many(database, 6)
    edited = await raw_db.fetchval("SELECT id FROM audit_event WHERE seq = 4")
    await tamper(raw_db, "UPDATE audit_event SET ip = '10.6.6.6' WHERE seq = 4")
    report = await verify(database)
    assert not report.ok
    assert report.broken_event_id == edited
    assert report.broken_seq == 4
    assert report.checked == 3
    assert "edited" in (report.reason or "")


async def test_a_deleted_event_is_detected(database: Database, raw_db: asyncpg.Connection) -> None:
    await record_many(database, 5)
    await tamper(raw_db, "DELETE FROM audit_event WHERE seq = 2")
    report = await verify(database)
    assert not report.ok
    assert report.broken_seq == 3
    assert "gap" in (report.reason or "")


async def test_a_recomputed_hash_still_breaks_the_next_link(
    database: Database, raw_db: asyncpg.Connection
) -> None:
    await record_many(database, 3)
    row = await raw_db.fetchrow("SELECT * FROM audit_event WHERE seq = 2")
    values = {**dict(row), "action": "test.innocent", "details": json.loads(row["details"])}
    forged = AuditEventRow(**values)
    forged_hash = service.event_digest(forged)
    await tamper(
        raw_db,
        "UPDATE audit_event SET action = 'test.innocent', hash = $1 WHERE seq = 2",
        forged_hash,
    )
    report = await verify(database)
    assert report.broken_seq == 3
    assert "prev_hash" in (report.reason or "")


async def test_secrets_are_refused_in_details(database: Database) -> None:
    async with database.transaction() as tx:
        with pytest.raises(ValueError, match="must not carry secrets"):
            await service.record(tx, CTX, "test.leak", details={"password": "hunter2"})
        await tx.rollback()
