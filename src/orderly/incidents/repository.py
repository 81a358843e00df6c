"""Every query on the incident and SLO tables."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import asyncpg

from orderly.core.db import Tx

_COLUMNS = (
    "id, title, severity, status, source, commander_id, summary, impact, root_cause, "
    "resolution, lessons_learned, action_items, dedupe_key, started_at, stabilized_at, "
    "closed_at"
)


@dataclasses.dataclass(frozen=True, slots=True)
class IncidentRow:
    """An incident as stored."""

    id: uuid.UUID
    title: str
    severity: str
    status: str
    source: str
    commander_id: uuid.UUID | None
    summary: str | None
    impact: str | None
    root_cause: str | None
    resolution: str | None
    lessons_learned: str | None
    action_items: list[str]
    dedupe_key: str | None
    started_at: datetime
    stabilized_at: datetime | None
    closed_at: datetime | None


@dataclasses.dataclass(frozen=True, slots=True)
class TimelineRow:
    """A timeline entry as stored."""

    at: datetime
    kind: str
    message: str
    actor: str
    data: dict[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class OrderImpact:
    """Orders created in a window and their value, per currency."""

    currency: str
    orders: int
    total_cents: int


def _incident(row: asyncpg.Record | None) -> IncidentRow | None:
    if row is None:
        return None
    return IncidentRow(**{f.name: row[f.name] for f in dataclasses.fields(IncidentRow)})


async def insert(
    tx: Tx,
    *,
    title: str,
    severity: str,
    source: str,
    summary: str | None,
    commander_id: uuid.UUID | None,
    dedupe_key: str | None,
) -> IncidentRow | None:
    """Open an incident; None when an open one already has *dedupe_key*."""
    row = await tx.fetchrow(
        f"""INSERT INTO incident (id, title, severity, status, source, commander_id, summary,
                                  action_items, dedupe_key, started_at)
            VALUES ($1, $2, $3, 'active', $4, $5, $6, '[]'::jsonb, $7, now())
            ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL AND status <> 'closed'
            DO NOTHING
            RETURNING {_COLUMNS}""",  # noqa: S608 - constant columns
        uuid.uuid4(),
        title,
        severity,
        source,
        commander_id,
        summary,
        dedupe_key,
    )
    return _incident(row)


async def get(tx: Tx, incident_id: uuid.UUID, *, lock: bool = False) -> IncidentRow | None:
    """One incident."""
    suffix = " FOR UPDATE" if lock else ""
    return _incident(
        await tx.fetchrow(
            f"SELECT {_COLUMNS} FROM incident WHERE id = $1" + suffix,  # noqa: S608
            incident_id,
        )
    )


async def find_open(tx: Tx, dedupe_key: str) -> IncidentRow | None:
    """The open incident carrying *dedupe_key*."""
    return _incident(
        await tx.fetchrow(
            f"SELECT {_COLUMNS} FROM incident WHERE dedupe_key = $1 AND status <> 'closed'",  # noqa: S608
            dedupe_key,
        )
    )


async def page(
    tx: Tx, *, status: str | None, limit: int, before: tuple[datetime, uuid.UUID] | None
) -> list[IncidentRow]:
    """Incidents newest first, keyset-paginated by (started_at, id)."""
    rows = await tx.fetch(
        f"""SELECT {_COLUMNS} FROM incident
             WHERE ($1::text IS NULL OR status = $1)
               AND ($2::timestamptz IS NULL OR (started_at, id) < ($2, $3))
             ORDER BY started_at DESC, id DESC LIMIT $4""",  # noqa: S608
        status,
        before[0] if before else None,
        before[1] if before else None,
        limit,
    )
    return [r for r in (_incident(row) for row in rows) if r is not None]


async def update(tx: Tx, incident_id: uuid.UUID, changes: dict[str, Any]) -> IncidentRow | None:
    """Set the given columns (names from a fixed allow-list) and timestamps."""
    allowed = {
        "title", "severity", "status", "commander_id", "summary", "impact", "root_cause",
        "resolution", "lessons_learned", "action_items", "stabilized_at", "closed_at",
    }  # fmt: skip
    names = [name for name in changes if name in allowed]
    if not names:
        return await get(tx, incident_id)
    sets = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(names))
    return _incident(
        await tx.fetchrow(
            f"UPDATE incident SET {sets}, updated_at = now() WHERE id = $1 RETURNING {_COLUMNS}",  # noqa: S608 - allow-listed names
            incident_id,
            *(changes[name] for name in names),
        )
    )


async def add_entry(
    tx: Tx, incident_id: uuid.UUID, kind: str, message: str, actor: str, data: dict[str, Any]
) -> None:
    """Append a timeline entry."""
    await tx.execute(
        """INSERT INTO incident_timeline (incident_id, kind, message, actor, data)
           VALUES ($1, $2, $3, $4, $5)""",
        incident_id,
        kind,
        message,
        actor,
        data,
    )


async def timelines(tx: Tx, ids: list[uuid.UUID]) -> dict[uuid.UUID, list[TimelineRow]]:
    """Timelines of several incidents, oldest entry first."""
    rows = await tx.fetch(
        """SELECT incident_id, at, kind, message, actor, data FROM incident_timeline
            WHERE incident_id = ANY($1::uuid[]) ORDER BY id""",
        ids,
    )
    result: dict[uuid.UUID, list[TimelineRow]] = {i: [] for i in ids}
    for row in rows:
        result[row["incident_id"]].append(
            TimelineRow(row["at"], row["kind"], row["message"], row["actor"], row["data"])
        )
    return result


async def order_impact(tx: Tx, start: datetime, end: datetime) -> list[OrderImpact]:
    """Orders created in [start, end) and their value, per currency (read-only impact figures)."""
    rows = await tx.fetch(
        """SELECT currency, count(*) AS orders, COALESCE(sum(total_cents), 0)::bigint AS total
             FROM sales_order WHERE created_at >= $1 AND created_at < $2
            GROUP BY currency ORDER BY currency""",
        start,
        end,
    )
    return [OrderImpact(row["currency"], int(row["orders"]), int(row["total"])) for row in rows]


# ---------------------------------------------------------------- SLO request counts


async def add_request_counts(tx: Tx, rows: Iterable[tuple[datetime, str, str, int]]) -> None:
    """Add (minute, series, outcome, count) from one process."""
    await tx.executemany(
        """INSERT INTO slo_request_minute (minute, series, outcome, count) VALUES ($1, $2, $3, $4)
           ON CONFLICT (minute, series, outcome)
           DO UPDATE SET count = slo_request_minute.count + EXCLUDED.count""",
        list(rows),
    )


async def request_totals(tx: Tx, series: str, windows_seconds: list[int]) -> list[tuple[int, int]]:
    """(good, bad) for *series* over each window ending now (minutes overlapping it)."""
    rows = await tx.fetch(
        """SELECT w.secs,
                  COALESCE(sum(m.count) FILTER (WHERE m.outcome = 'good'), 0)::bigint AS good,
                  COALESCE(sum(m.count) FILTER (WHERE m.outcome = 'bad'), 0)::bigint AS bad
             FROM unnest($2::int[]) AS w(secs)
             LEFT JOIN slo_request_minute m
               ON m.series = $1
              AND m.minute > now() - make_interval(secs => w.secs) - interval '1 minute'
            GROUP BY w.secs""",
        series,
        windows_seconds,
    )
    by_window = {int(row["secs"]): (int(row["good"]), int(row["bad"])) for row in rows}
    return [by_window.get(w, (0, 0)) for w in windows_seconds]


@dataclasses.dataclass(frozen=True, slots=True)
class MinuteCounts:
    """One minute of ``/v1`` traffic: requests by outcome and the latency histogram."""

    minute: datetime
    good: int
    bad: int
    buckets: dict[int, int]


async def add_latency_counts(tx: Tx, rows: Iterable[tuple[datetime, int, int]]) -> None:
    """Add (minute, bucket, count) from one process."""
    await tx.executemany(
        """INSERT INTO slo_latency_minute (minute, bucket, count) VALUES ($1, $2, $3)
           ON CONFLICT (minute, bucket)
           DO UPDATE SET count = slo_latency_minute.count + EXCLUDED.count""",
        list(rows),
    )


async def minutes_since(tx: Tx, since: datetime) -> list[MinuteCounts]:
    """Per-minute availability counts and latency histograms from *since* on, oldest first."""
    rows = await tx.fetch(
        """WITH a AS (
              SELECT minute,
                     sum(count) FILTER (WHERE outcome = 'good')::bigint AS good,
                     sum(count) FILTER (WHERE outcome = 'bad')::bigint AS bad
                FROM slo_request_minute
               WHERE series = 'availability' AND minute >= $1
               GROUP BY minute),
            l AS (
              SELECT minute, json_object_agg(bucket, count) AS buckets
                FROM slo_latency_minute WHERE minute >= $1 GROUP BY minute)
            SELECT COALESCE(a.minute, l.minute) AS minute, COALESCE(a.good, 0) AS good,
                   COALESCE(a.bad, 0) AS bad, l.buckets
              FROM a FULL JOIN l ON l.minute = a.minute
             ORDER BY 1""",
        since,
    )
    return [
        MinuteCounts(
            minute=row["minute"],
            good=int(row["good"]),
            bad=int(row["bad"]),
            buckets={int(k): int(v) for k, v in (row["buckets"] or {}).items()},
        )
        for row in rows
    ]
