"""``orderly backup`` and ``orderly restore``: a consistent dump plus a manifest, checked back.

A backup is one file, an uncompressed tar of two members:

* ``orderly.dump`` — ``pg_dump --format=custom`` of the whole database, taken in
  a snapshot exported by a repeatable-read transaction;
* ``manifest.json`` — read in *that same snapshot*: schema revision, row count
  of every table, the ledger's and the audit chain's heads, a digest of the
  wallet balances, and the SHA-256 of ``orderly.dump``.

So the manifest describes exactly what the dump holds, even while orders keep
coming in. ``tar xf`` gives an operator the plain custom-format dump for
``pg_restore`` by hand.

``restore`` checks the file first (tar structure, checksum: a corrupted or
truncated file touches no database), refuses a database that already has
tables unless ``force`` (which drops every schema first), runs
``pg_restore --single-transaction --exit-on-error``, re-reads the manifest's
figures from the restored database and compares, then runs the same checks as
``orderly audit verify``. Every failure is a :class:`BackupError` whose message
is one printable line.

Binaries: ``pg_dump`` may be older than nothing it talks to — it refuses a
newer server — and ``pg_restore`` must read the dump's archive version. The
candidates are ``/usr/lib/postgresql/<major>/bin`` (Debian's, one per major),
the binaries the ``pgserver`` wheel ships (the embedded database's own) and
``PATH``; the one whose major equals the server's wins, else the oldest newer one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import asyncpg

from orderly.core.db import libpq_url

FORMAT = "orderly-backup/1"
DUMP_MEMBER = "orderly.dump"
MANIFEST_MEMBER = "manifest.json"
SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")

Progress = Callable[[str], None]


class BackupError(Exception):
    """A backup or restore failed; the message is one line, safe to print."""


@dataclass(frozen=True)
class Tool:
    """A PostgreSQL client binary and its major version."""

    path: Path
    major: int


# ---------------------------------------------------------------- binaries


def _candidate_dirs() -> list[Path]:
    dirs = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    with contextlib.suppress(ImportError):
        import importlib.util

        spec = importlib.util.find_spec("pgserver")
        if spec is not None and spec.origin is not None:
            dirs.append(Path(spec.origin).parent / "pginstall" / "bin")
    override = os.environ.get("ORDERLY_PG_BIN_DIR")  # tests and unusual installs
    return [Path(override)] if override else dirs


def _version_of(binary: Path) -> int | None:
    try:
        out = subprocess.run(  # noqa: S603 - a PostgreSQL binary we located, fixed args
            [str(binary), "--version"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"\(PostgreSQL\)\s+(\d+)", out)
    return int(match.group(1)) if match else None


def find_tool(name: str, *, at_least: int, prefer: int) -> Tool:
    """The *name* binary of major ≥ *at_least*: *prefer* if present, else the closest newer."""
    found: dict[Path, int] = {}
    paths = [d / name for d in _candidate_dirs()]
    if not os.environ.get("ORDERLY_PG_BIN_DIR") and (on_path := shutil.which(name)):
        paths.append(Path(on_path))
    for path in paths:
        if path.is_file() and os.access(path, os.X_OK) and path.resolve() not in found:
            major = _version_of(path)
            if major is not None:
                found[path.resolve()] = major
    if not found:
        raise BackupError(
            f"{name} not found (install the PostgreSQL client, e.g. apt-get install "
            f"postgresql-client-{prefer}, or set ORDERLY_PG_BIN_DIR)"
        )
    usable = [Tool(p, m) for p, m in found.items() if m >= at_least]
    if not usable:
        have = ", ".join(sorted({str(m) for m in found.values()}))
        raise BackupError(
            f"version mismatch: {name} {have} cannot work with PostgreSQL {at_least}; "
            f"install postgresql-client-{at_least} or newer"
        )
    exact = [t for t in usable if t.major == prefer]
    return exact[0] if exact else min(usable, key=lambda t: t.major)


# ---------------------------------------------------------------- the manifest's figures


async def _server_major(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SHOW server_version_num")) // 10000


async def _tables(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch(
        """SELECT format('%I.%I', n.nspname, c.relname) AS name
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
             AND n.nspname <> ALL($1::text[]) AND n.nspname NOT LIKE 'pg_temp%'
           ORDER BY 1""",
        list(SYSTEM_SCHEMAS),
    )
    return [r["name"] for r in rows]


async def _exists(conn: asyncpg.Connection, table: str) -> bool:
    return bool(await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table))


async def figures(conn: asyncpg.Connection) -> dict[str, Any]:
    """What the manifest records, read on *conn* (inside its snapshot when it has one)."""
    counts: dict[str, int] = {}
    for table in await _tables(conn):
        # Names come from the catalog, quoted by format('%I'); no user input reaches here.
        counts[table] = int(await conn.fetchval(f"SELECT count(*) FROM {table}"))  # noqa: S608
    revision = None
    if await _exists(conn, "public.alembic_version"):
        revision = await conn.fetchval("SELECT string_agg(version_num, ',') FROM alembic_version")
    audit_head = None
    if await _exists(conn, "public.audit_event"):
        row = await conn.fetchrow("SELECT seq, hash FROM audit_event ORDER BY seq DESC LIMIT 1")
        audit_head = {"seq": row["seq"], "hash": row["hash"]} if row else None
    ledger_head = None
    if await _exists(conn, "public.ledger_entry"):
        row = await conn.fetchrow(
            """SELECT coalesce(max(id), 0) AS last_id, count(*) AS entries,
                      coalesce(sum(abs(amount_cents)), 0)::bigint AS volume
               FROM ledger_entry"""
        )
        assert row is not None  # an aggregate always answers one row
        wallets = await conn.fetch(
            """SELECT id::text, currency, balance_cents FROM ledger_account
               WHERE kind = 'wallet' ORDER BY id"""
        )
        digest = hashlib.sha256(
            "\n".join(f"{w['id']} {w['currency']} {w['balance_cents']}" for w in wallets).encode()
        ).hexdigest()
        ledger_head = {
            "last_entry_id": int(row["last_id"]),
            "entries": int(row["entries"]),
            "volume_cents": int(row["volume"]),
            "wallets": len(wallets),
            "wallet_balances_sum_cents": sum(int(w["balance_cents"] or 0) for w in wallets),
            "wallet_balances_sha256": digest,
        }
    return {
        "schema_revision": revision,
        "row_counts": counts,
        "audit_head": audit_head,
        "ledger_head": ledger_head,
    }


# ---------------------------------------------------------------- running pg_dump / pg_restore


def _run_with_progress(
    argv: list[str], *, what: str, total: int, marker: re.Pattern[str], progress: Progress
) -> None:
    """Run *argv* (verbose), reporting ``what n/total`` as *marker* lines go by."""
    env = {**os.environ, "PGCONNECT_TIMEOUT": "10"}
    proc = subprocess.Popen(  # noqa: S603 - pg_dump/pg_restore with arguments built here
        argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env
    )
    assert proc.stderr is not None
    done, last_report, errors = 0, time.monotonic(), []
    for raw in io.TextIOWrapper(proc.stderr, errors="replace"):
        line = raw.strip()
        if marker.search(line):
            done += 1
            if time.monotonic() - last_report >= 1.0:
                progress(f"{what}: {done}/{total} tables")
                last_report = time.monotonic()
        elif "error" in line.lower() or "fatal" in line.lower():
            errors.append(line)
    if proc.wait() != 0:
        detail = errors[0] if errors else f"exit code {proc.returncode}"
        if "server version mismatch" in detail or "unsupported version" in detail:
            raise BackupError(f"version mismatch: {detail}")
        raise BackupError(f"{Path(argv[0]).name} failed: {detail}")
    progress(f"{what}: {total}/{total} tables")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------- backup


async def backup(url: str, path: Path, *, progress: Progress) -> dict[str, Any]:
    """Write a backup of *url* to *path*; return its manifest."""
    url = libpq_url(url)
    try:
        conn = await asyncpg.connect(url, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        raise BackupError(f"cannot connect to the database: {exc}") from None
    try:
        major = await _server_major(conn)
        pg_dump = find_tool("pg_dump", at_least=major, prefer=major)
        progress(f"backup: PostgreSQL {major}, {pg_dump.path} ({pg_dump.major})")
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
            facts = await figures(conn)
            server_version = await conn.fetchval("SHOW server_version")
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=path.parent, prefix=".orderly-backup-") as tmp:
                dump = Path(tmp) / DUMP_MEMBER
                argv = [
                    str(pg_dump.path),
                    "--format=custom",
                    "--verbose",
                    f"--snapshot={snapshot}",
                    f"--file={dump}",
                    f"--dbname={url}",
                ]
                # pg_dump runs while this transaction (and so its snapshot) stays open.
                await asyncio.to_thread(
                    _run_with_progress,
                    argv,
                    what="backup",
                    total=len(facts["row_counts"]),
                    marker=re.compile(r"dumping contents of table"),
                    progress=progress,
                )
                manifest = {
                    "format": FORMAT,
                    "created_at": datetime.now(UTC).isoformat(),
                    "server_version": server_version,
                    "server_major": major,
                    "pg_dump_major": pg_dump.major,
                    **facts,
                    "dump_bytes": dump.stat().st_size,
                    "dump_sha256": _sha256(dump),
                }
                partial = Path(tmp) / "backup.tar"
                with tarfile.open(partial, "w") as archive:
                    archive.add(dump, arcname=DUMP_MEMBER)
                    body = json.dumps(manifest, indent=2, sort_keys=True).encode()
                    info = tarfile.TarInfo(MANIFEST_MEMBER)
                    info.size, info.mtime, info.mode = len(body), int(time.time()), 0o600
                    archive.addfile(info, io.BytesIO(body))
                os.chmod(partial, 0o600)
                os.replace(partial, path)  # never a half-written file at PATH
    finally:
        await conn.close()
    return manifest


# ---------------------------------------------------------------- restore


@contextlib.contextmanager
def open_backup(path: Path, workdir: Path) -> Iterator[tuple[dict[str, Any], Path]]:
    """Check *path* (structure, manifest, checksum) and yield (manifest, extracted dump)."""
    if not path.is_file():
        raise BackupError(f"no backup file at {path}")
    try:
        with tarfile.open(path, "r:") as archive:
            members = {m.name: m for m in archive.getmembers()}
            if set(members) != {DUMP_MEMBER, MANIFEST_MEMBER}:
                raise BackupError(f"{path} is not an orderly backup (unexpected contents)")
            manifest_file = archive.extractfile(members[MANIFEST_MEMBER])
            dump_file = archive.extractfile(members[DUMP_MEMBER])
            if manifest_file is None or dump_file is None:
                raise BackupError(f"{path} is not an orderly backup (unexpected contents)")
            manifest = json.loads(manifest_file.read())
            dump = workdir / DUMP_MEMBER
            with dump.open("wb") as out:
                _copy(dump_file, out)
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise BackupError(f"{path} is corrupted or truncated ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{path} is not an orderly backup (manifest format)")
    if dump.stat().st_size != manifest.get("dump_bytes") or _sha256(dump) != manifest.get(
        "dump_sha256"
    ):
        raise BackupError(f"{path} is corrupted or truncated (checksum mismatch)")
    yield manifest, dump


def _copy(source: IO[bytes], target: IO[bytes]) -> None:
    for chunk in iter(lambda: source.read(1 << 20), b""):
        target.write(chunk)


async def _clear(conn: asyncpg.Connection) -> None:
    """Drop every non-system schema (``--force``), leaving an empty ``public``."""
    schemas = await conn.fetch(
        """SELECT quote_ident(nspname) AS name FROM pg_namespace
           WHERE nspname <> ALL($1::text[]) AND nspname NOT LIKE 'pg_temp%'
             AND nspname NOT LIKE 'pg_toast%'""",
        list(SYSTEM_SCHEMAS),
    )
    async with conn.transaction():
        for schema in schemas:
            await conn.execute(f"DROP SCHEMA {schema['name']} CASCADE")
        await conn.execute("CREATE SCHEMA IF NOT EXISTS public")


def compare(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """Human-readable differences between the manifest's figures and the restored ones."""
    problems = []
    for key in ("schema_revision", "audit_head", "ledger_head"):
        if expected.get(key) != actual.get(key):
            problems.append(f"{key}: backup {expected.get(key)!r}, restored {actual.get(key)!r}")
    want, have = expected.get("row_counts", {}), actual.get("row_counts", {})
    for table in sorted(set(want) | set(have)):
        if want.get(table) != have.get(table):
            problems.append(
                f"rows in {table}: backup {want.get(table)}, restored {have.get(table)}"
            )
    return problems


async def restore(url: str, path: Path, *, force: bool, progress: Progress) -> dict[str, Any]:
    """Restore *path* into *url* and check it against its manifest; return the manifest."""
    url = libpq_url(url)
    with (
        tempfile.TemporaryDirectory(prefix="orderly-restore-") as tmp,
        open_backup(path, Path(tmp)) as (manifest, dump),
    ):
        progress(f"restore: {path} checked ({manifest['dump_bytes']} bytes, sha256 ok)")
        try:
            conn = await asyncpg.connect(url, timeout=10)
        except (OSError, asyncpg.PostgresError) as exc:
            raise BackupError(f"cannot connect to the database: {exc}") from None
        try:
            major = await _server_major(conn)
            pg_restore = find_tool(
                "pg_restore",
                at_least=max(int(manifest.get("pg_dump_major", major)), major),
                prefer=major,
            )
            existing = await _tables(conn)
            if existing and not force:
                raise BackupError(
                    f"the database is not empty ({len(existing)} tables); "
                    "restore into an empty database, or pass --force to replace it"
                )
            if existing:
                progress(f"restore: --force: dropping {len(existing)} existing tables")
                await _clear(conn)
        finally:
            await conn.close()
        argv = [
            str(pg_restore.path),
            "--verbose",
            "--single-transaction",
            "--exit-on-error",
            "--no-owner",
            "--no-privileges",
            f"--dbname={url}",
            str(dump),
        ]
        await asyncio.to_thread(
            _run_with_progress,
            argv,
            what="restore",
            total=len(manifest.get("row_counts", {})),
            marker=re.compile(r"processing data for table"),
            progress=progress,
        )
    conn = await asyncpg.connect(url, timeout=10)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            restored = await figures(conn)
    finally:
        await conn.close()
    problems = compare(manifest, restored)
    if problems:
        extra = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise BackupError(f"restored database differs from the manifest: {problems[0]}{extra}")
    progress(
        f"restore: manifest matches ({sum(restored['row_counts'].values())} rows in "
        f"{len(restored['row_counts'])} tables, revision {restored['schema_revision']})"
    )
    return manifest


def stderr_progress(message: str) -> None:
    """Progress lines on stderr (stdout stays for the result)."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
