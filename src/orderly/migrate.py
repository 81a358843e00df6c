"""Alembic, driven programmatically: ``orderly migrate``, ``orderly serve`` and tests."""

from __future__ import annotations

import io
from importlib.resources import files
from typing import TextIO

from alembic import command
from alembic.config import Config


def alembic_config(database_url: str, *, stdout: TextIO | None = None) -> Config:
    """An Alembic config that points at orderly's migrations and *database_url*."""
    config = Config(stdout=stdout) if stdout is not None else Config()
    config.set_main_option("script_location", str(files("orderly") / "migrations"))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Apply migrations up to *revision*."""
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    """Revert migrations down to *revision* (``base`` empties the schema)."""
    command.downgrade(alembic_config(database_url), revision)


def current(database_url: str) -> str:
    """The revision the database is at, as Alembic prints it."""
    buffer = io.StringIO()
    command.current(alembic_config(database_url, stdout=buffer))
    return buffer.getvalue().strip()
