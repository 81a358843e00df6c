"""Record the SQL a real request runs, and turn it into a pgbench script or a replay.

The raw-PostgreSQL ceiling must run *the same* transaction as the endpoint.
Rather than copying statements by hand (and drifting from the code), the
benchmark sends one request through the real app in-process and records every
statement on the connections the app takes from its pool: :class:`QueryRecorder`
wraps the app's :meth:`Database.acquire <orderly.core.db.Database.acquire>` and
:meth:`~orderly.core.db.Database.release` and adds asyncpg's public query logger
(``Connection.add_query_logger``) to each connection for as long as the app holds
it. For ``POST /v1/orders`` the statements are rendered for pgbench: each bound
value becomes a literal, except the ones that must vary per transaction (order
id, user, products, idempotency key), which become pgbench expressions over
``\\set`` variables. ``POST /v1/orders/{id}/pay`` is replayed on bare asyncpg
instead (``benchmarks/ledger_pay.py``).
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

_PLACEHOLDER = re.compile(r"\$(\d+)")
# asyncpg's own type introspection is not the request's.
_NOISE = ("typeinfo_tree", "pg_catalog.version()", "current_schema()", "standard_conforming")


@dataclasses.dataclass
class Recorded:
    """One statement as the driver saw it (``started``: when its log record arrived)."""

    sql: str
    args: tuple[Any, ...]
    connection: int
    started: float
    source: str


class QueryRecorder:
    """Records the statements the app runs on its pooled connections while :meth:`recording`.

    *database* is the app's :class:`orderly.core.db.Database`. Its ``acquire`` and
    ``release`` are wrapped on this instance only (public methods, nothing private
    touched): each connection the app takes gets a query logger, removed again
    when the connection goes back to the pool. :meth:`close` restores both.
    Connections are told apart by their server process id.
    """

    def __init__(self, database: Any) -> None:
        self.database = database
        self.statements: list[Recorded] = []
        self._active = False
        self._loggers: dict[int, Any] = {}
        self._acquire = database.acquire
        self._release = database.release
        database.acquire = self._acquire_logged
        database.release = self._release_logged

    def close(self) -> None:
        """Give the app back its own ``acquire`` and ``release``."""
        for name in ("acquire", "release"):
            if name in vars(self.database):
                delattr(self.database, name)

    @contextmanager
    def recording(self) -> Iterator[list[Recorded]]:
        """Record what runs inside the block."""
        self.statements = []
        self._active = True
        try:
            yield self.statements
        finally:
            self._active = False

    async def _acquire_logged(self) -> Any:
        conn = await self._acquire()
        key = conn.get_server_pid()

        def logged(record: Any) -> None:
            if self._active:
                # Arrival time, not start time: asyncpg schedules the loggers (call_soon) in
                # completion order, which on one connection is the order of the statements,
                # while "now - elapsed" can swap neighbours when the loop is busy.
                self.statements.append(
                    Recorded(
                        record.query, tuple(record.args or ()), key, time.perf_counter(), "asyncpg"
                    )
                )

        conn.add_query_logger(logged)
        self._loggers[id(conn)] = logged
        return conn

    async def _release_logged(self, conn: Any) -> None:
        logged = self._loggers.pop(id(conn), None)
        if logged is not None:
            conn.remove_query_logger(logged)
        await self._release(conn)


@dataclasses.dataclass(frozen=True)
class Variables:
    """Captured values that must vary per pgbench transaction, and their pool of choices."""

    order_id: str
    idempotency_key: str | None
    # per-user values: captured value -> the same value for every benchmark user (index = :u)
    per_user: dict[str, list[str]]
    # captured product ids -> pgbench variable choosing among ``products``
    products: list[str]
    product_vars: dict[str, str]


@dataclasses.dataclass(frozen=True)
class TransactionScript:
    """A pgbench script and a human summary of what it runs."""

    text: str
    statements: list[str]
    excluded: list[str]
    round_trips: int


def _hex(data: bytes) -> str:
    return f"decode('{data.hex()}', 'hex')"


def _text_literal(value: str) -> str:
    # pgbench substitutes ``:name`` anywhere in the text, quotes or not: a literal
    # holding a colon (JSON, timestamps) is passed hex-encoded instead.
    if ":" in value or "\\" in value or not value.isascii():
        return f"convert_from({_hex(value.encode())}, 'UTF8')"
    return "'" + value.replace("'", "''") + "'"


def _pick(values: Sequence[str], variable: str, sql_type: str) -> str:
    items = ", ".join("'" + v + "'" for v in values)
    return f"(ARRAY[{items}]::{sql_type}[])[:{variable}]"


class Renderer:
    """Turns captured values into SQL expressions for pgbench."""

    ORDER_ID = "md5('order-' || :client_id::text || '-' || :n::text)::uuid"
    KEY = "('pgbench-' || :client_id::text || '-' || :n::text)"

    def __init__(self, variables: Variables) -> None:
        self.v = variables

    def value(self, value: Any) -> str:
        """A SQL expression for one bound value."""
        v = self.v
        if value is None:
            return "NULL"
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float | Decimal):
            return repr(value) if not isinstance(value, Decimal) else str(value)
        if isinstance(value, uuid.UUID):
            return self._uuid(str(value))
        if isinstance(value, str):
            return self._string(value)
        if isinstance(value, bytes | bytearray | memoryview):
            data = bytes(value)
            text = data.decode("utf-8", errors="replace")
            if v.order_id in text and text.encode() == data:
                return f"convert_to({self._string(text)}, 'UTF8')"
            return _hex(data)
        if isinstance(value, datetime):
            return f"'{value.isoformat()}'::timestamptz"
        if isinstance(value, date):
            return f"'{value.isoformat()}'::date"
        if isinstance(value, timedelta):
            return f"'{value.total_seconds()} seconds'::interval"
        if isinstance(value, list | tuple):
            return "ARRAY[" + ", ".join(self.value(item) for item in value) + "]"
        if isinstance(value, dict):
            return self._string(json.dumps(value))
        raise TypeError(f"cannot render a {type(value).__name__} for pgbench")

    def _uuid(self, text: str) -> str:
        v = self.v
        if text == v.order_id:
            return self.ORDER_ID
        if text in v.product_vars:
            return _pick(v.products, v.product_vars[text], "uuid")
        if text in v.per_user:
            return _pick(v.per_user[text], "u", "uuid")
        return f"'{text}'::uuid"

    def _string(self, text: str) -> str:
        v = self.v
        if text == v.order_id:
            return f"({self.ORDER_ID})::text"
        if v.idempotency_key is not None and text == v.idempotency_key:
            return self.KEY
        if text in v.product_vars:
            return _pick(v.products, v.product_vars[text], "text")
        if text in v.per_user:
            return _pick(v.per_user[text], "u", "text")
        if v.order_id in text:
            return f"replace({_text_literal(text)}, '{v.order_id}', ({self.ORDER_ID})::text)"
        return _text_literal(text)

    def statement(self, sql: str, args: Sequence[Any]) -> str:
        """*sql* with each ``$n`` replaced by the expression for its value."""
        rendered = [self.value(arg) for arg in args]

        def sub(match: re.Match[str]) -> str:
            index = int(match.group(1)) - 1
            if index >= len(rendered):
                raise ValueError(f"statement uses ${index + 1} but has {len(rendered)} values")
            return f"({rendered[index]})"

        body = _PLACEHOLDER.sub(sub, sql).strip().rstrip(";").strip()
        return body + ";"


def _first_line(sql: str) -> str:
    line = " ".join(sql.split())
    return line if len(line) <= 110 else line[:107] + "..."


def request_transaction(
    recorded: Sequence[Recorded], marker: str, what: str
) -> tuple[list[Recorded], list[str]]:
    """The BEGIN … COMMIT whose statements include *marker* (lower case), and what was left out.

    Only the connection that ran *marker* counts; its other transactions and any
    statement outside a transaction are listed as excluded.
    """
    order_conn = next((r.connection for r in recorded if marker in r.sql.lower()), None)
    if order_conn is None:
        raise RuntimeError(f"no {marker!r} was recorded: is {what} served?")
    ordered = sorted(recorded, key=lambda r: r.started)
    excluded: list[str] = []
    transactions: list[list[Recorded]] = []
    current: list[Recorded] | None = None
    for item in ordered:
        sql = item.sql.strip()
        upper = sql.upper()
        if item.connection != order_conn:
            excluded.append(f"other connection: {_first_line(sql)}")
            continue
        if any(noise in sql for noise in _NOISE):
            continue
        if upper.startswith("BEGIN"):
            current = []
            transactions.append(current)
        if current is None:
            excluded.append(f"outside a transaction: {_first_line(sql) or '(empty)'}")
            continue
        current.append(item)
        if upper.startswith(("COMMIT", "ROLLBACK")):
            current = None
    chosen: list[Recorded] | None = None
    for transaction in transactions:
        if any(marker in r.sql.lower() for r in transaction):
            chosen = transaction
        else:
            names = "; ".join(_first_line(r.sql) or "(empty statement)" for r in transaction)
            excluded.append(f"other transaction, {len(transaction)} round trips: {names}")
    if chosen is None or not chosen[-1].sql.strip().upper().startswith("COMMIT"):
        raise RuntimeError(f"the recorded {what} transaction has no BEGIN … COMMIT")
    return chosen, excluded


def render_script(
    recorded: Sequence[Recorded], variables: Variables, *, n_users: int
) -> TransactionScript:
    """The pgbench script of the transaction that inserted the order."""
    chosen, excluded = request_transaction(recorded, "insert into sales_order", "POST /v1/orders")
    renderer = Renderer(variables)
    body = [renderer.statement(r.sql, r.args) for r in chosen]
    summary = [_first_line(r.sql) for r in chosen]
    n_products = len(variables.products)
    header = [
        "-- Generated by orderly bench from the statements one real POST /v1/orders ran.",
        f"\\set u random(1, {n_users})",
        f"\\set p1 random(1, {n_products})",
        f"\\set p2 1 + (:p1 + random(0, {max(0, n_products - 2)})) % {n_products}",
        "\\set n random(1, 9000000000000000000)",
    ]
    text = "\n".join(header + body) + "\n"
    return TransactionScript(text, summary, excluded, round_trips=len(summary))
