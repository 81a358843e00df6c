"""Every query on audit_event."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from orderly.core.db import Tx

# Arbitrary constant naming "the audit chain" among transaction-scoped advisory locks.
CHAIN_LOCK_KEY = 0x6F72_6465_726C_7961

_COLUMNS = (
    "id, seq, occurred_at, actor_id, actor_role, action, target_type, target_id, "
    "ip, user_agent, request_id, details, prev_hash, hash"
)


@dataclass(frozen=True, slots=True)
class AuditEventRow:
    """One audit event as stored (``hash`` covers every other field but itself)."""

    id: uuid.UUID
    seq: int
    occurred_at: datetime
    actor_id: uuid.UUID | None
    actor_role: str | None
    action: str
    target_type: str | None
    target_id: str | None
    ip: str | None
    user_agent: str | None
    request_id: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class ChainLink:
    """The newest event's position and hash: what the next event chains onto."""

    seq: int
    hash: str


def _event(row: asyncpg.Record) -> AuditEventRow:
    return AuditEventRow(
        id=row["id"],
        seq=row["seq"],
        occurred_at=row["occurred_at"],
        actor_id=row["actor_id"],
        actor_role=row["actor_role"],
        action=row["action"],
        target_type=row["target_type"],
        target_id=row["target_id"],
        ip=row["ip"],
        user_agent=row["user_agent"],
        request_id=row["request_id"],
        details=row["details"],
        prev_hash=row["prev_hash"],
        hash=row["hash"],
    )


async def lock_chain(tx: Tx) -> None:
    """Serialize appends until this transaction ends (commit or rollback releases it)."""
    await tx.execute("SELECT pg_advisory_xact_lock($1)", CHAIN_LOCK_KEY)


async def read_only_snapshot(tx: Tx) -> None:
    """Make *tx* one read-only, repeatable-read snapshot (must be its first statement)."""
    await tx.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")


async def last_link(tx: Tx) -> ChainLink | None:
    """The newest event's ``seq`` and ``hash``, or None for an empty log."""
    row = await tx.fetchrow("SELECT seq, hash FROM audit_event ORDER BY seq DESC LIMIT 1")
    return ChainLink(seq=row["seq"], hash=row["hash"]) if row else None


async def add(tx: Tx, event: AuditEventRow) -> None:
    """Insert one event (a constraint violation surfaces here)."""
    await tx.execute(
        f"""INSERT INTO audit_event ({_COLUMNS})
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)""",  # noqa: S608 - fixed column list
        event.id,
        event.seq,
        event.occurred_at,
        event.actor_id,
        event.actor_role,
        event.action,
        event.target_type,
        event.target_id,
        event.ip,
        event.user_agent,
        event.request_id,
        event.details,
        event.prev_hash,
        event.hash,
    )


async def page(
    tx: Tx,
    *,
    limit: int,
    before_seq: int | None,
    action: str | None,
    actor_id: uuid.UUID | None,
    target_id: str | None,
) -> list[AuditEventRow]:
    """Events newest first, keyset-paginated by ``seq``."""
    where: list[str] = []
    args: list[Any] = [limit]
    for fragment, value in (
        ("seq < ${}", before_seq),
        ("action = ${}", action),
        ("actor_id = ${}", actor_id),
        ("target_id = ${}", target_id),
    ):
        if value is not None:
            args.append(value)
            where.append(fragment.format(len(args)))
    clause = ("WHERE " + " AND ".join(where)) if where else ""
    rows = await tx.fetch(
        f"SELECT {_COLUMNS} FROM audit_event {clause} ORDER BY seq DESC LIMIT $1",  # noqa: S608 - fixed fragments, values are bound
        *args,
    )
    return [_event(row) for row in rows]


async def in_order(tx: Tx, batch: int = 1000) -> AsyncIterator[AuditEventRow]:
    """Every event oldest first, read in batches (bounded memory for long logs)."""
    after = 0
    while True:
        rows = await tx.fetch(
            f"SELECT {_COLUMNS} FROM audit_event WHERE seq > $1 ORDER BY seq LIMIT $2",  # noqa: S608 - fixed column list
            after,
            batch,
        )
        if not rows:
            return
        for row in rows:
            yield _event(row)
        after = rows[-1]["seq"]
