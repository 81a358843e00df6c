"""Helpers for migration files."""

from __future__ import annotations

from pathlib import Path

from alembic import op
from sqlalchemy.util import await_only

SQL_DIR = Path(__file__).resolve().parent / "sql"


def execute_script(sql: str) -> None:
    """Run a multi-statement SQL script in the migration's transaction.

    asyncpg's prepared statements take one command each; its simple-query
    ``execute`` takes a whole script, on the same connection and transaction.
    """
    driver_connection = op.get_bind().connection.driver_connection
    assert driver_connection is not None
    await_only(driver_connection.execute(sql))


def execute_file(name: str) -> None:
    """Run ``sql/<name>`` (a frozen script shipped beside the migrations)."""
    execute_script((SQL_DIR / name).read_text(encoding="utf-8"))
