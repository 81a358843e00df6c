"""What ``orderly user create`` runs: one transaction, committed by this composition step."""

from __future__ import annotations

import uuid

from orderly.accounts import service
from orderly.accounts.schemas import Role
from orderly.accounts.security import Security
from orderly.audit.schemas import AuditContext
from orderly.config import Settings
from orderly.core.db import Database


async def create_user(
    settings: Settings,
    database_url: str,
    *,
    email: str,
    role: Role,
    password: str,
    name: str | None = None,
) -> uuid.UUID:
    """Create the account and its audit event; returns the new user's id."""
    database = Database(database_url, pool_size=1, application_name="orderly-cli")
    security = Security.from_settings(settings)
    try:
        async with database.transaction() as tx:
            user = await service.create_user(
                tx,
                security,
                email=email,
                password=password,
                role=role,
                name=name,
                context=AuditContext(actor_role="operator", user_agent="orderly-cli"),
            )
            await tx.commit()
        return user.id
    finally:
        await security.limits.close()
        await database.dispose()
