"""Imports every domain's models so ``Base.metadata`` is complete (Alembic, tests)."""

from __future__ import annotations


def load_all() -> None:
    """Import each domain's ``models`` module; the import registers its tables."""
    # Domains add one import line here as they gain tables.
    import orderly.accounts.models
    import orderly.analytics.models
    import orderly.audit.models
    import orderly.catalog.models
    import orderly.core.models
    import orderly.flags.models
    import orderly.incidents.models
    import orderly.ledger.models
    import orderly.notifications.models
    import orderly.orders.models
    import orderly.payments.models
    import orderly.recommendations.models  # noqa: F401
