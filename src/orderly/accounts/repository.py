"""Every query on user_account, refresh_family and refresh_token.

Parameterized SQL on the caller's :class:`~orderly.core.db.Tx`; rows come back
as the frozen dataclasses below. ``updated_at`` is set by each UPDATE here
(the table has no trigger for it).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from orderly.accounts.schemas import STAFF_ROLES, Role
from orderly.core.db import Tx


@dataclass(frozen=True, slots=True)
class User:
    """A user_account row; ``name``, ``phone`` and ``shipping_address`` hold ciphertext."""

    id: uuid.UUID
    email: str
    password_hash: str
    role: Role
    name: str | None
    phone: str | None
    shipping_address: str | None
    pii_key_id: str | None
    disabled_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class SealedPii:
    """A user's personal data as stored: ciphertexts and the id of the key that sealed them."""

    name: str | None
    phone: str | None
    shipping_address: str | None
    key_id: str


def _user(row: asyncpg.Record) -> User:
    return User(
        id=row["id"],
        email=row["email"],
        password_hash=row["password_hash"],
        role=Role(row["role"]),
        name=row["name"],
        phone=row["phone"],
        shipping_address=row["shipping_address"],
        pii_key_id=row["pii_key_id"],
        disabled_at=row["disabled_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def insert_user(
    tx: Tx,
    *,
    user_id: uuid.UUID,
    email: str,
    password_hash: str,
    role: Role,
    pii: SealedPii,
) -> User | None:
    """Insert a user; None when the e-mail is taken (the transaction stays usable)."""
    row = await tx.fetchrow(
        """INSERT INTO user_account
               (id, email, password_hash, role, name, phone, shipping_address, pii_key_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (email) DO NOTHING
           RETURNING id, email, password_hash, role, name, phone, shipping_address,
                     pii_key_id, disabled_at, created_at, updated_at""",
        user_id,
        email,
        password_hash,
        role.value,
        pii.name,
        pii.phone,
        pii.shipping_address,
        pii.key_id,
    )
    return _user(row) if row is not None else None


async def lock_login(tx: Tx, email: str) -> None:
    """Serialize login attempts on one account until this transaction ends.

    Checking the failure allowance, verifying and counting the failure then
    happen one attempt at a time, so a burst of parallel guesses cannot all
    pass the check before any failure is counted.
    """
    await tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('orderly.login:' || $1::text, 0))",
        email,
    )


_GET = (
    "SELECT id, email, password_hash, role, name, phone, shipping_address, pii_key_id,"
    " disabled_at, created_at, updated_at FROM user_account WHERE id = $1"
)


async def get(tx: Tx, user_id: uuid.UUID, *, for_update: bool = False) -> User | None:
    """A user by id (row-locked with *for_update*)."""
    row = await tx.fetchrow(_GET + " FOR UPDATE" if for_update else _GET, user_id)
    return _user(row) if row is not None else None


async def get_by_email(tx: Tx, email: str) -> User | None:
    """A user by normalised e-mail."""
    row = await tx.fetchrow(
        """SELECT id, email, password_hash, role, name, phone, shipping_address, pii_key_id,
                  disabled_at, created_at, updated_at
           FROM user_account WHERE email = $1""",
        email,
    )
    return _user(row) if row is not None else None


async def count_admins_locked(tx: Tx) -> int:
    """Number of admins, locking their rows (two demotions cannot both pass the check)."""
    rows = await tx.fetch("SELECT id FROM user_account WHERE role = 'admin' FOR UPDATE")
    return len(rows)


async def set_role(tx: Tx, user_id: uuid.UUID, role: Role) -> User:
    """Set a user's role; the updated row."""
    row = await tx.fetchrow(
        """UPDATE user_account SET role = $2, updated_at = now() WHERE id = $1
           RETURNING id, email, password_hash, role, name, phone, shipping_address,
                     pii_key_id, disabled_at, created_at, updated_at""",
        user_id,
        role.value,
    )
    assert row is not None, "set_role on a user the caller did not lock"
    return _user(row)


async def set_password_hash(tx: Tx, user_id: uuid.UUID, password_hash: str) -> None:
    """Replace a user's password hash (a rehash under new parameters)."""
    await tx.execute(
        "UPDATE user_account SET password_hash = $2, updated_at = now() WHERE id = $1",
        user_id,
        password_hash,
    )


async def stale_pii_rows(tx: Tx, current_key_id: str, limit: int) -> list[User]:
    """Users whose personal data is sealed with an older key, locked, skipping rows in use."""
    rows = await tx.fetch(
        """SELECT id, email, password_hash, role, name, phone, shipping_address, pii_key_id,
                  disabled_at, created_at, updated_at
           FROM user_account
           WHERE pii_key_id IS NOT NULL AND pii_key_id <> $1
           ORDER BY id
           LIMIT $2
           FOR UPDATE SKIP LOCKED""",
        current_key_id,
        limit,
    )
    return [_user(row) for row in rows]


async def update_pii(tx: Tx, sealed: list[tuple[uuid.UUID, SealedPii]]) -> None:
    """Store re-sealed personal data, one (user id, sealed values) pair per user."""
    await tx.executemany(
        """UPDATE user_account
           SET name = $2, phone = $3, shipping_address = $4, pii_key_id = $5, updated_at = now()
           WHERE id = $1""",
        [(uid, p.name, p.phone, p.shipping_address, p.key_id) for uid, p in sealed],
    )


async def staff_emails(tx: Tx) -> list[str]:
    """E-mail addresses of active staff and admins."""
    rows = await tx.fetch(
        """SELECT email FROM user_account
           WHERE role = ANY($1::text[]) AND disabled_at IS NULL
           ORDER BY email""",
        sorted(STAFF_ROLES),
    )
    return [row["email"] for row in rows]


# ---------------------------------------------------------------- login sessions


@dataclass(frozen=True, slots=True)
class AuthState:
    """What authenticating a request needs to know about its user and login session."""

    role: Role
    disabled: bool
    session_revoked: bool


async def auth_state(tx: Tx, user_id: uuid.UUID, family_id: uuid.UUID) -> AuthState | None:
    """The user's role and status and whether the login session is revoked, in one query."""
    row = await tx.fetchrow(
        """SELECT u.role,
                  u.disabled_at IS NOT NULL AS disabled,
                  f.id IS NULL OR f.revoked_at IS NOT NULL AS session_revoked
           FROM user_account AS u
           LEFT JOIN refresh_family AS f ON f.id = $2 AND f.user_id = u.id
           WHERE u.id = $1""",
        user_id,
        family_id,
    )
    if row is None:
        return None
    return AuthState(
        role=Role(row["role"]), disabled=row["disabled"], session_revoked=row["session_revoked"]
    )


async def create_family(tx: Tx, user_id: uuid.UUID) -> uuid.UUID:
    """Start a login session (a refresh-token family)."""
    family_id = uuid.uuid4()
    await tx.execute("INSERT INTO refresh_family (id, user_id) VALUES ($1, $2)", family_id, user_id)
    return family_id


async def add_refresh_token(
    tx: Tx, family_id: uuid.UUID, digest: bytes, expires_at: datetime
) -> None:
    """Store a refresh token's digest in its family."""
    await tx.execute(
        """INSERT INTO refresh_token (id, family_id, token_hash, expires_at)
           VALUES ($1, $2, $3, $4)""",
        uuid.uuid4(),
        family_id,
        digest,
        expires_at,
    )


@dataclass(frozen=True, slots=True)
class SpentToken:
    """A refresh token just spent by rotation."""

    family_id: uuid.UUID
    user_id: uuid.UUID
    expires_at: datetime


async def spend_refresh_token(tx: Tx, digest: bytes) -> SpentToken | None:
    """Mark the token spent if it is unspent and its family live (atomic: one winner per token)."""
    row = await tx.fetchrow(
        """UPDATE refresh_token AS t SET spent_at = now()
           FROM refresh_family AS f
           WHERE t.token_hash = $1 AND t.spent_at IS NULL
             AND t.family_id = f.id AND f.revoked_at IS NULL
           RETURNING t.family_id, f.user_id, t.expires_at""",
        digest,
    )
    if row is None:
        return None
    return SpentToken(
        family_id=row["family_id"], user_id=row["user_id"], expires_at=row["expires_at"]
    )


@dataclass(frozen=True, slots=True)
class TokenOwner:
    """Whose family a refresh token belongs to, and whether it was already spent or revoked."""

    family_id: uuid.UUID
    user_id: uuid.UUID
    spent: bool
    revoked: bool


async def find_refresh_token(tx: Tx, digest: bytes) -> TokenOwner | None:
    """Look a refresh token up by digest, whatever its state."""
    row = await tx.fetchrow(
        """SELECT t.family_id, f.user_id,
                  t.spent_at IS NOT NULL AS spent,
                  f.revoked_at IS NOT NULL AS revoked
           FROM refresh_token AS t
           JOIN refresh_family AS f ON f.id = t.family_id
           WHERE t.token_hash = $1""",
        digest,
    )
    if row is None:
        return None
    return TokenOwner(
        family_id=row["family_id"],
        user_id=row["user_id"],
        spent=row["spent"],
        revoked=row["revoked"],
    )


async def revoke_family(tx: Tx, family_id: uuid.UUID, reason: str) -> bool:
    """Revoke a login session; False when it was already revoked."""
    revoked = await tx.fetchval(
        """UPDATE refresh_family SET revoked_at = now(), revoked_reason = $2
           WHERE id = $1 AND revoked_at IS NULL
           RETURNING id""",
        family_id,
        reason,
    )
    return revoked is not None


async def prune_sessions(tx: Tx, revoked_before: datetime) -> tuple[int, int]:
    """Delete expired refresh tokens and families that are revoked or left without tokens.

    An expired token can never be honoured, so forgetting it loses no reuse
    detection; a live family always keeps its newest, unexpired token. Two
    statements on purpose: the second must see the tokens the first deleted.
    """
    tokens: int = await tx.fetchval(
        """WITH gone AS (DELETE FROM refresh_token WHERE expires_at < now() RETURNING 1)
           SELECT count(*) FROM gone"""
    )
    families: int = await tx.fetchval(
        """WITH gone AS (
               DELETE FROM refresh_family AS f
               WHERE f.revoked_at < $1
                  OR (f.created_at < $1
                      AND NOT EXISTS (SELECT 1 FROM refresh_token AS t WHERE t.family_id = f.id))
               RETURNING 1)
           SELECT count(*) FROM gone""",
        revoked_before,
    )
    return tokens, families
