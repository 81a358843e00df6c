"""Alembic migrations; run through ``orderly migrate`` (see ``orderly.migrate``)."""
