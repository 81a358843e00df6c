"""Test helpers for anything that needs users and tokens (usable by every domain's tests)."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass

import httpx

from orderly.accounts import service
from orderly.accounts.schemas import Role
from orderly.accounts.security import Security
from orderly.audit.schemas import AuditContext
from orderly.config import Settings
from orderly.core.db import Database

PASSWORD = "Plenty-long passphrase 42"
_counter = itertools.count(1)

# argon2id at test cost: the parameters are real, only cheaper (tests/accounts/test_crypto checks
# that raising them rehashes on login).
CHEAP_HASHING = {"password_hash_time_cost": 1, "password_hash_memory_kib": 1024}


@dataclass(frozen=True)
class SignedInUser:
    """A user created for a test, with the headers of a fresh login."""

    id: uuid.UUID
    email: str
    password: str
    role: Role
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        """``Authorization: Bearer …`` for this user."""
        return {"Authorization": f"Bearer {self.access_token}"}


def unique_email(prefix: str = "user") -> str:
    """A fresh e-mail address."""
    return f"{prefix}{next(_counter)}-{uuid.uuid4().hex[:6]}@example.com"


async def create_user(
    database: Database,
    settings: Settings,
    role: Role = Role.customer,
    *,
    email: str | None = None,
    password: str = PASSWORD,
    name: str | None = "Test User",
) -> uuid.UUID:
    """Create a user of any role directly through the accounts service (committed)."""
    security = Security.from_settings(settings)
    async with database.transaction() as tx:
        user = await service.create_user(
            tx,
            security,
            email=email or unique_email(role.value),
            password=password,
            role=role,
            name=name,
            context=AuditContext(actor_role="test"),
        )
        await tx.commit()
    return user.id


async def login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> dict[str, str]:
    """POST /v1/auth/token and return the token pair (asserts success)."""
    response = await client.post("/v1/auth/token", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    pair: dict[str, str] = response.json()
    return pair


async def signed_in(
    client: httpx.AsyncClient,
    database: Database,
    settings: Settings,
    role: Role = Role.customer,
) -> SignedInUser:
    """Create a user of *role* and log in through the API."""
    email = unique_email(role.value)
    user_id = await create_user(database, settings, role, email=email)
    pair = await login(client, email)
    return SignedInUser(user_id, email, PASSWORD, role, pair["access_token"], pair["refresh_token"])
