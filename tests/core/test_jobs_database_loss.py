"""A job that failed because the database went away waits for it before asking for a retry.

PgQueuer records a retry in the database; while the database is down that write
fails and the job would end as a terminal exception (an order's e-mail never
sent). tests/deploy/test_topology.py shows the whole drill; this is the rule.
"""

from __future__ import annotations

import asyncpg

from orderly import errors
from orderly.core.jobs import _database_lost


def test_connection_losses_are_recognised_through_the_cause_chain() -> None:
    wrapped = RuntimeError("task failed")
    wrapped.__cause__ = asyncpg.exceptions.ConnectionDoesNotExistError("closed mid-operation")
    assert _database_lost(wrapped)
    assert _database_lost(asyncpg.exceptions.CannotConnectNowError("shutting down"))
    assert _database_lost(errors.Overloaded(1, "The database is busy; retry shortly."))
    assert _database_lost(ConnectionRefusedError())
    assert not _database_lost(ValueError("a bug"))
    assert not _database_lost(asyncpg.exceptions.UniqueViolationError("duplicate"))
