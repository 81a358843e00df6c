"""Database access: one asyncpg pool per process and the transaction every caller owns.

orderly has one persistence style (chosen by measurement, benchmarks/README.md):
each domain's ``repository.py`` sends parameterized SQL through a :class:`Tx`
and returns typed rows (frozen dataclasses). There is no ORM session at run
time: SQLAlchemy only declares the schema for Alembic (``core/schema.py``).

A request, a job or a CLI command opens one :class:`Tx`, passes it down, and
commits it once. The transaction is *lazy*: no connection is taken from the
pool and no ``BEGIN`` is sent until the first statement, so a request answered
from a cache costs the database nothing. Leaving the block without
:meth:`Tx.commit` rolls back.

The URL is either the operator's ``ORDERLY_DATABASE_URL`` or the embedded
PostgreSQL's socket URL: one code path for both runtime modes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import orjson

from orderly import errors
from orderly.core.telemetry import DB_POOL, DB_POOL_WAIT

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    PooledConnection: TypeAlias = PoolConnectionProxy[asyncpg.Record]

ACQUIRE_TIMEOUT_SECONDS = 5.0
# The connection went away under us (server restart, pooler reconnect, network).
_CONNECTION_LOST = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    OSError,
)
# Lost in the middle of a transaction: the server aborts it, so a retry is safe (and a
# mutating request carries an Idempotency-Key for the case where COMMIT was lost).
# InterfaceError counts only once the connection is closed: otherwise it is a misuse.
_LOST_MIDWAY = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown: a restart
    asyncpg.exceptions.ProtocolViolationError,  # PgBouncer: "server login has been failing"
    # A restart's FATAL notice that arrived while the connection was idle in the transaction
    # leaves asyncpg's protocol in a state no statement can run from (seen in the drills).
    asyncpg.exceptions.InternalClientError,
    OSError,
)
_BEGIN_FAILED = (*_CONNECTION_LOST, asyncpg.exceptions.InternalClientError)
_DATABASE_AWAY = "The database is unavailable; retry shortly."


class _LostMidway:
    """Around a statement: a connection lost midway is 503 overloaded (retry), not a 500."""

    __slots__ = ("conn",)

    def __init__(self, conn: PooledConnection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if exc is None:
            return
        if isinstance(exc, _LOST_MIDWAY) or (
            isinstance(exc, asyncpg.InterfaceError) and _gone(self.conn)
        ):
            raise errors.Overloaded(1, _DATABASE_AWAY) from exc


def _gone(conn: PooledConnection) -> bool:
    """Whether *conn* was closed (asyncpg's pool detaches a connection the server closed)."""
    try:
        return conn.is_closed()
    except asyncpg.InterfaceError:
        return True


def _discard(conn: PooledConnection) -> None:
    """Close a broken connection for good (asyncpg may already have detached it)."""
    with contextlib.suppress(asyncpg.InterfaceError):
        conn.terminate()


def libpq_url(url: str) -> str:
    """The plain libpq form of *url* (asyncpg, pgbench, psql, pg_dump all take it)."""
    for prefix in ("postgresql+asyncpg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url.removeprefix(prefix)
    if not url.startswith("postgresql://"):
        raise ValueError("not a postgresql:// URL")
    return url


def with_application_name(url: str, application_name: str) -> str:
    """*url* naming its sessions *application_name* (a libpq parameter asyncpg passes on)."""
    parts = urlsplit(url)
    query = [
        (key, value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
        if key != "application_name"
    ]
    query.append(("application_name", application_name))
    return urlunsplit(parts._replace(query=urlencode(query, safe="/")))


def _json_text(value: Any) -> str:
    # Text is taken as already-serialized JSON (repositories that build a document once
    # pass it on as is); anything else is serialized here.
    return value if isinstance(value, str) else orjson.dumps(value).decode()


async def _init_connection(conn: asyncpg.Connection) -> None:
    """json/jsonb columns come back as Python values, decoded by orjson.

    A parameter may be a Python value or JSON text (see :func:`_json_text`).
    """
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name, encoder=_json_text, decoder=orjson.loads, schema="pg_catalog"
        )


async def _reset_connection(conn: asyncpg.Connection) -> None:
    """Make a returned connection clean: only an open transaction needs undoing.

    asyncpg's default reset sends ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL`` on every release — a round trip per request. orderly takes only
    transaction-scoped advisory locks, never LISTENs or SETs on pooled connections
    (PgQueuer listens on its own), so a rollback of a stray transaction suffices.
    """
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


class Database:
    """The process's connection pool; :meth:`transaction` is how everything reaches it."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        statement_timeout_ms: int = 15_000,
        application_name: str = "orderly",
        acquire_timeout: float = ACQUIRE_TIMEOUT_SECONDS,
        direct_url: str | None = None,
    ) -> None:
        self.url = libpq_url(url)
        # With a direct URL, *url* is a transaction-pooling PgBouncer: no named prepared
        # statements, no session settings at connect; LISTEN/NOTIFY and PgQueuer use the
        # direct URL (deploy/README.md, "PgBouncer").
        direct = libpq_url(direct_url) if direct_url else self.url
        self.behind_pooler = direct != self.url
        # Connections opened beside the pool (PgQueuer's, the flag listener) carry the
        # process's name too: pg_stat_activity, and `orderly migrate downgrade`'s check for
        # running instances, see every session of an orderly process.
        self.direct_url = with_application_name(direct, application_name)
        self.pool_size = pool_size
        self.acquire_timeout = acquire_timeout
        self._statement_timeout_ms = statement_timeout_ms
        self._application_name = application_name
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def open(self) -> asyncpg.Pool:
        """Create the pool (idempotent); the app's lifespan calls it at start-up."""
        if self._pool is not None:
            return self._pool
        async with self._opening:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self.url,
                    min_size=1,
                    max_size=self.pool_size,
                    # A dropped connection is replaced on its next use; an idle one is
                    # closed after five minutes so a quiet process holds few connections.
                    max_inactive_connection_lifetime=300,
                    timeout=5,
                    command_timeout=self._statement_timeout_ms / 1000 + 5,
                    init=_init_connection,
                    reset=_reset_connection,
                    server_settings=self._server_settings(),
                    statement_cache_size=0 if self.behind_pooler else 100,
                )
                self._update_metrics()
        return self._pool

    def _server_settings(self) -> dict[str, str]:
        if self.behind_pooler:
            # PgBouncer refuses unknown startup parameters; its connect_query sets the
            # timeouts on each server connection instead (deploy/pgbouncer.ini).
            return {"application_name": self._application_name}
        return {
            "application_name": self._application_name,
            "statement_timeout": str(self._statement_timeout_ms),
            "idle_in_transaction_session_timeout": "60000",
        }

    def _update_metrics(self) -> None:
        pool = self._pool
        if pool is None:
            return
        size, idle = pool.get_size(), pool.get_idle_size()
        DB_POOL.labels("checked_out").set(size - idle)
        DB_POOL.labels("idle").set(idle)

    async def acquire(self) -> PooledConnection:
        """A pooled connection within ``acquire_timeout``, else :class:`errors.Overloaded`.

        Running out of connections is overload: the caller is told to come back
        (503 with Retry-After) instead of waiting in an unbounded line.
        """
        pool = self._pool or await self.open()
        began = time.perf_counter()
        try:
            conn = await pool.acquire(timeout=self.acquire_timeout)
        except TimeoutError:
            raise errors.Overloaded(1, "The database is busy; retry shortly.") from None
        finally:
            DB_POOL_WAIT.observe(time.perf_counter() - began)
        self._update_metrics()
        return conn

    async def release(self, conn: PooledConnection) -> None:
        """Give a connection back to the pool."""
        if self._pool is not None:
            await self._pool.release(conn)
            self._update_metrics()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """One transaction that rolls back unless the caller commits it."""
        tx = Tx(self)
        try:
            yield tx
        finally:
            await tx.close()

    async def ping(self, within_seconds: float = 2.0) -> None:
        """Raise unless the database answers a trivial query within *within_seconds*."""
        pool = self._pool or await self.open()
        async with pool.acquire(timeout=within_seconds) as conn:
            await conn.fetchval("SELECT 1", timeout=within_seconds)

    async def dispose(self) -> None:
        """Close every pooled connection."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()


class Tx:
    """A unit of work on one connection: statements, then :meth:`commit` once.

    The connection is taken and ``BEGIN`` sent on the first statement.
    Callbacks registered with :meth:`after_commit` run once the commit
    succeeded (caches are invalidated there, so a concurrent reader cannot
    re-cache the old row between our invalidation and our commit). After a
    commit or rollback the next statement starts a new transaction (the
    idempotency layer records a refusal after rolling back the attempt).
    """

    __slots__ = ("_after_commit", "_conn", "_database", "_done")

    def __init__(self, database: Database) -> None:
        self._database = database
        self._conn: PooledConnection | None = None
        self._after_commit: list[Callable[[], None]] | None = None
        self._done = False

    async def connection(self) -> PooledConnection:
        """The asyncpg connection inside this transaction (repositories and ``core.jobs`` only)."""
        conn = self._conn
        if conn is None:
            if self._done:
                raise RuntimeError("unit of work already closed")
            conn = await self._begin()
            self._conn = conn
        return conn

    async def _begin(self) -> PooledConnection:
        # A pooled connection the server closed (a restart, a pooler's reconnect) is only
        # found out when used, and whatever BEGIN runs into there (the closed socket; a
        # restart's FATAL notice that left asyncpg's protocol state behind) ends it. BEGIN
        # has no effects, so it is sent again on a fresh one; if that fails too, the
        # database is away: 503 with Retry-After, not a 500.
        for attempt in (1, 2):
            conn = await self._database.acquire()
            try:
                await conn.execute("BEGIN")
                return conn
            except Exception as exc:
                _discard(conn)
                await self._database.release(conn)
                if attempt == 2:
                    if isinstance(exc, _BEGIN_FAILED):
                        raise errors.Overloaded(1, _DATABASE_AWAY) from exc
                    raise
            except BaseException:
                await self._database.release(conn)
                raise
        raise AssertionError("unreachable")

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        """All rows of *query*."""
        conn = await self.connection()
        with _LostMidway(conn):
            return await conn.fetch(query, *args)

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        """The first row of *query*, or None."""
        conn = await self.connection()
        with _LostMidway(conn):
            return await conn.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        """The first column of the first row of *query*, or None."""
        conn = await self.connection()
        with _LostMidway(conn):
            return await conn.fetchval(query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        """Run *query*; the server's status line (``UPDATE 1``)."""
        conn = await self.connection()
        with _LostMidway(conn):
            return await conn.execute(query, *args)

    async def executemany(self, query: str, args: Iterable[Sequence[Any]]) -> None:
        """Run *query* once per argument tuple, pipelined."""
        conn = await self.connection()
        with _LostMidway(conn):
            await conn.executemany(query, args)

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run *callback* once this transaction commits (never on rollback)."""
        if self._after_commit is None:
            self._after_commit = []
        self._after_commit.append(callback)

    @property
    def active(self) -> bool:
        """Whether a statement has run and the transaction is still open."""
        return self._conn is not None

    async def commit(self) -> None:
        """Commit (a no-op when nothing ran), then run the after-commit callbacks."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                with _LostMidway(conn):  # unknown outcome: the Idempotency-Key makes the retry safe
                    await conn.execute("COMMIT")
            finally:
                await self._database.release(conn)
        callbacks, self._after_commit = self._after_commit, None
        for callback in callbacks or ():
            callback()

    async def rollback(self) -> None:
        """Roll back whatever ran; after-commit callbacks are dropped."""
        conn, self._conn = self._conn, None
        self._after_commit = None
        if conn is None:
            return
        try:
            if not conn.is_closed():
                await conn.execute("ROLLBACK")
        except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError):
            # A broken connection cannot roll back; the pool replaces it, and the server
            # aborts the transaction when the connection goes.
            _discard(conn)
        finally:
            await self._database.release(conn)

    async def close(self) -> None:
        """End the unit of work: roll back unless it was committed."""
        if self._conn is not None:
            await self.rollback()
        self._done = True
