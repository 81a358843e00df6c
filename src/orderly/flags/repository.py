"""Every query on the flag tables, over the caller's transaction."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import asyncpg

from orderly.core.db import Tx

CHANNEL = "orderly_flags"


@dataclasses.dataclass(frozen=True, slots=True)
class FlagRow:
    """A flag as stored: its Unleash definition."""

    name: str
    definition: dict[str, Any]
    updated_at: datetime


@dataclasses.dataclass(frozen=True, slots=True)
class SegmentRow:
    """A segment as stored."""

    id: int
    definition: dict[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class ReleaseRow:
    """A release plan as stored."""

    flag_name: str
    stages: list[dict[str, Any]]
    guard: dict[str, Any] | None
    status: str
    stage: int
    next_at: datetime | None
    paused_remaining_seconds: float | None
    history: list[dict[str, Any]]
    incident_id: uuid.UUID | None


@dataclasses.dataclass(frozen=True, slots=True)
class CohortCounts:
    """Outcomes of one cohort in a window."""

    ok: int
    failed: int

    @property
    def total(self) -> int:
        """All outcomes."""
        return self.ok + self.failed


def _flag(row: asyncpg.Record) -> FlagRow:
    return FlagRow(row["name"], row["definition"], row["updated_at"])


# ---------------------------------------------------------------- flags and segments


async def list_flags(
    tx: Tx, *, after: str | None = None, limit: int | None = None
) -> list[FlagRow]:
    """Flags ordered by name, optionally after *after*, at most *limit*."""
    rows = await tx.fetch(
        """SELECT name, definition, updated_at FROM flag
            WHERE $1::text IS NULL OR name > $1 ORDER BY name LIMIT $2""",
        after,
        limit,
    )
    return [_flag(row) for row in rows]


async def get_flag(tx: Tx, name: str, *, lock: bool = False) -> FlagRow | None:
    """One flag (row-locked with *lock*)."""
    suffix = " FOR UPDATE" if lock else ""
    row = await tx.fetchrow(
        "SELECT name, definition, updated_at FROM flag WHERE name = $1" + suffix,  # noqa: S608 - constant suffix
        name,
    )
    return _flag(row) if row is not None else None


async def upsert_flag(tx: Tx, name: str, definition: dict[str, Any]) -> None:
    """Create or replace a flag's definition."""
    await tx.execute(
        """INSERT INTO flag (name, definition) VALUES ($1, $2)
           ON CONFLICT (name) DO UPDATE SET definition = EXCLUDED.definition, updated_at = now()""",
        name,
        definition,
    )


async def delete_flag(tx: Tx, name: str) -> FlagRow | None:
    """Delete a flag; the deleted row, or None."""
    row = await tx.fetchrow(
        "DELETE FROM flag WHERE name = $1 RETURNING name, definition, updated_at", name
    )
    return _flag(row) if row is not None else None


async def list_segments(tx: Tx) -> list[SegmentRow]:
    """Every segment by id."""
    rows = await tx.fetch("SELECT id, definition FROM flag_segment ORDER BY id")
    return [SegmentRow(row["id"], row["definition"]) for row in rows]


async def upsert_segments(tx: Tx, segments: Iterable[tuple[int, dict[str, Any]]]) -> None:
    """Create or replace segments."""
    await tx.executemany(
        """INSERT INTO flag_segment (id, definition) VALUES ($1, $2)
           ON CONFLICT (id) DO UPDATE SET definition = EXCLUDED.definition, updated_at = now()""",
        list(segments),
    )


async def bump_version(tx: Tx) -> int:
    """Advance the configuration version and notify every process (delivered on commit)."""
    version: int = await tx.fetchval(
        """WITH v AS (
             INSERT INTO flag_config_version (id, version) VALUES (1, 1)
             ON CONFLICT (id) DO UPDATE SET version = flag_config_version.version + 1
             RETURNING version)
           SELECT version FROM v, LATERAL (SELECT pg_notify($1, version::text)) n""",
        CHANNEL,
    )
    return version


async def get_version(tx: Tx) -> int:
    """The current configuration version (0 before any change)."""
    value = await tx.fetchval("SELECT version FROM flag_config_version WHERE id = 1")
    return int(value or 0)


# ---------------------------------------------------------------- release plans

_RELEASE_COLUMNS = (
    "flag_name, stages, guard, status, stage, next_at, paused_remaining_seconds, history, "
    "incident_id"
)


def _release(row: asyncpg.Record | None) -> ReleaseRow | None:
    if row is None:
        return None
    return ReleaseRow(**{f.name: row[f.name] for f in dataclasses.fields(ReleaseRow)})


async def get_release(tx: Tx, name: str) -> ReleaseRow | None:
    """A flag's release plan."""
    return _release(
        await tx.fetchrow(
            f"SELECT {_RELEASE_COLUMNS} FROM flag_release WHERE flag_name = $1",  # noqa: S608 - constant columns
            name,
        )
    )


async def put_release(
    tx: Tx,
    name: str,
    *,
    stages: list[dict[str, Any]],
    guard: dict[str, Any] | None,
    status: str,
    next_at_seconds: float | None,
    history: list[dict[str, Any]],
) -> ReleaseRow:
    """Create or replace a flag's plan, starting at stage 0."""
    row = await tx.fetchrow(
        f"""INSERT INTO flag_release (flag_name, stages, guard, status, stage, next_at,
                                      paused_remaining_seconds, history, incident_id)
            VALUES ($1, $2, $3, $4, 0, now() + make_interval(secs => $5), NULL, $6, NULL)
            ON CONFLICT (flag_name) DO UPDATE SET
                stages = EXCLUDED.stages, guard = EXCLUDED.guard, status = EXCLUDED.status,
                stage = 0, next_at = EXCLUDED.next_at, paused_remaining_seconds = NULL,
                history = EXCLUDED.history, incident_id = NULL, created_at = now(),
                updated_at = now()
            RETURNING {_RELEASE_COLUMNS}""",  # noqa: S608 - constant columns
        name,
        stages,
        guard,
        status,
        next_at_seconds,
        history,
    )
    release = _release(row)
    assert release is not None
    return release


async def transition_release(
    tx: Tx,
    name: str,
    *,
    from_statuses: tuple[str, ...],
    status: str,
    event: dict[str, Any],
    expect_stage: int | None = None,
    stage: int | None = None,
    next_at_seconds: float | None = None,
    keep_remaining: bool = False,
    resume: bool = False,
    due_only: bool = False,
    incident_id: uuid.UUID | None = None,
) -> ReleaseRow | None:
    """Move a plan conditionally (status, stage, due time); None when the condition failed.

    The WHERE clause is the concurrency control: two workers, or a worker
    restarted mid-plan, can never apply the same step twice or skip one.
    """
    row = await tx.fetchrow(
        f"""UPDATE flag_release SET
                status = $3,
                stage = COALESCE($5, stage),
                next_at = CASE
                    WHEN $8
                    THEN now() + make_interval(secs => COALESCE(paused_remaining_seconds, 0))
                    WHEN $6::float8 IS NULL THEN NULL
                    ELSE now() + make_interval(secs => $6) END,
                paused_remaining_seconds = CASE
                    WHEN $7 THEN GREATEST(0, EXTRACT(EPOCH FROM next_at - now()))::float8
                    ELSE NULL END,
                history = history || jsonb_build_array($2::jsonb),
                incident_id = COALESCE($10, incident_id),
                updated_at = now()
            WHERE flag_name = $1 AND status = ANY($4::text[])
              AND ($9::int IS NULL OR stage = $9)
              AND (NOT $11 OR next_at <= now())
            RETURNING {_RELEASE_COLUMNS}""",  # noqa: S608 - constant columns
        name,
        event,
        status,
        list(from_statuses),
        stage,
        next_at_seconds,
        keep_remaining,
        resume,
        expect_stage,
        incident_id,
        due_only,
    )
    return _release(row)


async def due_releases(tx: Tx) -> list[ReleaseRow]:
    """Running plans whose hold time is over."""
    rows = await tx.fetch(
        f"""SELECT {_RELEASE_COLUMNS} FROM flag_release
             WHERE status = 'running' AND next_at <= now() ORDER BY next_at"""  # noqa: S608
    )
    return [r for r in (_release(row) for row in rows) if r is not None]


async def guarded_releases(tx: Tx) -> list[ReleaseRow]:
    """Plans the guard watches: running or paused, or completed less than a window ago.

    A plan that reached 100 % is still young: the last stage's errors show up
    in the outcomes only after it completed, so its guard keeps watching for
    ``window_seconds`` after the completing step (``updated_at``).
    """
    rows = await tx.fetch(
        f"""SELECT {_RELEASE_COLUMNS} FROM flag_release
             WHERE guard IS NOT NULL
               AND (status IN ('running', 'paused')
                    OR (status = 'completed'
                        AND updated_at > now() - make_interval(
                            secs => (guard ->> 'window_seconds')::float8)))"""  # noqa: S608
    )
    return [r for r in (_release(row) for row in rows) if r is not None]


# ---------------------------------------------------------------- outcomes


async def add_outcomes(tx: Tx, rows: Iterable[tuple[str, str, datetime, int, int]]) -> None:
    """Add (flag, cohort, bucket, ok, failed) counts from one process."""
    await tx.executemany(
        """INSERT INTO flag_outcome (flag_name, cohort, bucket, ok, failed)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (flag_name, cohort, bucket) DO UPDATE
              SET ok = flag_outcome.ok + EXCLUDED.ok,
                  failed = flag_outcome.failed + EXCLUDED.failed""",
        list(rows),
    )


async def window_counts(tx: Tx, name: str, window_seconds: float) -> dict[str, CohortCounts]:
    """Outcomes per cohort over the last *window_seconds*."""
    rows = await tx.fetch(
        """SELECT cohort, COALESCE(sum(ok), 0)::bigint AS ok,
                  COALESCE(sum(failed), 0)::bigint AS failed
             FROM flag_outcome
            WHERE flag_name = $1 AND bucket > now() - make_interval(secs => $2)
            GROUP BY cohort""",
        name,
        float(window_seconds),
    )
    counts = {"on": CohortCounts(0, 0), "off": CohortCounts(0, 0)}
    for row in rows:
        counts[row["cohort"]] = CohortCounts(int(row["ok"]), int(row["failed"]))
    return counts


async def prune_outcomes(tx: Tx, older_than_seconds: float) -> None:
    """Drop outcome buckets no guard window can reach any more."""
    await tx.execute(
        "DELETE FROM flag_outcome WHERE bucket < now() - make_interval(secs => $1)",
        float(older_than_seconds),
    )
