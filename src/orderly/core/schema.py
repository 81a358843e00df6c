"""The schema's declaration for Alembic: a declarative base, never queried at run time.

Every domain's ``models.py`` declares its tables on :class:`Base` so that
Alembic's autogenerate and the drift test (tests/test_migrations.py) can
compare them with the migrated database. Data is read and written only by
the repositories, with SQL over asyncpg (``core/db.py``).
"""

from __future__ import annotations

from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every orderly table (constraint names are deterministic)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def sqlalchemy_url(url: str) -> str:
    """The SQLAlchemy asyncpg form of a plain libpq URL (Alembic's engine only)."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url.removeprefix(prefix)
    raise ValueError("not a postgresql:// URL")
