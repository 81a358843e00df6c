"""Record the SQL a real ``POST /v1/orders`` runs, and turn it into a pgbench script.

The raw-PostgreSQL ceiling must run *the same* transaction as the endpoint.
Rather than copying statements by hand (and drifting from the code), the
benchmark places one order through the real app in-process and records every
statement on its connection — the asyncpg ones (repositories, job enqueue,
idempotency) through asyncpg's query logger, the SQLAlchemy ones through the
engine's ``before_cursor_execute`` event — then renders them for pgbench:
each bound value becomes a literal, except the ones that must vary per
transaction (order id, user, products, idempotency key), which become pgbench
expressions over ``\\set`` variables.
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

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

_PLACEHOLDER = re.compile(r"\$(\d+)")
# asyncpg's own type introspection and SQLAlchemy's first-connect probes are not the request's.
_NOISE = ("typeinfo_tree", "pg_catalog.version()", "current_schema()", "standard_conforming")


@dataclasses.dataclass
class Recorded:
    """One statement as the driver saw it."""

    sql: str
    args: tuple[Any, ...]
    connection: int
    started: float
    source: str


class QueryRecorder:
    """Records statements on every pooled connection of *engine* while :meth:`recording`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.statements: list[Recorded] = []
        self._active = False
        self._hooked: set[int] = set()
        sync_engine = engine.sync_engine
        event.listen(sync_engine, "before_cursor_execute", self._on_sqlalchemy)
        event.listen(sync_engine.pool, "checkout", self._on_checkout)

    def close(self) -> None:
        """Remove the SQLAlchemy hooks (asyncpg loggers die with their connections)."""
        event.remove(self.engine.sync_engine, "before_cursor_execute", self._on_sqlalchemy)
        event.remove(self.engine.sync_engine.pool, "checkout", self._on_checkout)

    @contextmanager
    def recording(self) -> Iterator[list[Recorded]]:
        """Record what runs inside the block."""
        self.statements = []
        self._active = True
        try:
            yield self.statements
        finally:
            self._active = False

    def _on_checkout(self, dbapi_connection: Any, *_: Any) -> None:
        raw = dbapi_connection.driver_connection
        key = id(raw)
        if key in self._hooked:
            return
        self._hooked.add(key)

        def logged(record: Any) -> None:
            if self._active:
                self.statements.append(
                    Recorded(
                        record.query,
                        tuple(record.args or ()),
                        key,
                        time.perf_counter() - record.elapsed,
                        "asyncpg",
                    )
                )

        raw.add_query_logger(logged)

    def _on_sqlalchemy(
        self,
        conn: Any,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> None:
        if not self._active:
            return
        if executemany:
            raise RuntimeError("executemany in the order path is not supported by the capture")
        raw = conn.connection.driver_connection
        self.statements.append(
            Recorded(statement, tuple(parameters or ()), id(raw), time.perf_counter(), "sqlalchemy")
        )


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


def render_script(
    recorded: Sequence[Recorded], variables: Variables, *, n_users: int
) -> TransactionScript:
    """The pgbench script of the transaction that inserted the order."""
    order_conn = next(
        (r.connection for r in recorded if "insert into sales_order" in r.sql.lower()), None
    )
    if order_conn is None:
        raise RuntimeError("no INSERT INTO sales_order was recorded: is POST /v1/orders served?")
    ordered = sorted(recorded, key=lambda r: r.started)
    renderer = Renderer(variables)
    excluded: list[str] = []
    # Split the order connection's statements into transactions; keep the order's one.
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
        if any("insert into sales_order" in r.sql.lower() for r in transaction):
            chosen = transaction
        else:
            names = "; ".join(_first_line(r.sql) or "(empty statement)" for r in transaction)
            kind = "pool pre-ping" if len(transaction) <= 3 and "ROLLBACK" in names else "other"
            excluded.append(f"{kind} transaction, {len(transaction)} round trips: {names}")
    if chosen is None or not chosen[-1].sql.strip().upper().startswith("COMMIT"):
        raise RuntimeError("the recorded order transaction has no BEGIN … COMMIT")
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
