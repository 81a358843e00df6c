"""Every query on user_account, refresh_family and refresh_token."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from orderly.accounts.models import RefreshFamily, RefreshToken, User


async def insert_user(session: AsyncSession, user: User) -> bool:
    """Insert *user*; False when the e-mail is taken (the transaction stays usable)."""
    statement = (
        insert(User)
        .values(
            id=user.id,
            email=user.email,
            password_hash=user.password_hash,
            role=user.role,
            name=user.name,
            phone=user.phone,
            shipping_address=user.shipping_address,
            pii_key_id=user.pii_key_id,
        )
        .on_conflict_do_nothing(index_elements=[User.email])
        .returning(User.id)
    )
    return (await session.execute(statement)).first() is not None


async def lock_login(session: AsyncSession, email: str) -> None:
    """Serialize login attempts on one account until this transaction ends.

    Checking the failure allowance, verifying and counting the failure then
    happen one attempt at a time, so a burst of parallel guesses cannot all
    pass the check before any failure is counted.
    """
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended('orderly.login:' || :email, 0))"),
        {"email": email},
    )


async def get(
    session: AsyncSession, user_id: uuid.UUID, *, for_update: bool = False
) -> User | None:
    """A user by id."""
    query = select(User).where(User.id == user_id)
    if for_update:
        query = query.with_for_update()
    return (await session.scalars(query)).first()


async def get_by_email(session: AsyncSession, email: str) -> User | None:
    """A user by normalised e-mail."""
    return (await session.scalars(select(User).where(User.email == email))).first()


async def count_admins_locked(session: AsyncSession) -> int:
    """Number of admins, locking their rows (two demotions cannot both pass the check)."""
    rows = await session.scalars(select(User.id).where(User.role == "admin").with_for_update())
    return len(rows.all())


@dataclass(frozen=True)
class AuthState:
    """What authenticating a request needs to know about its user and login session."""

    role: str
    disabled: bool
    session_revoked: bool


async def auth_state(
    session: AsyncSession, user_id: uuid.UUID, family_id: uuid.UUID
) -> AuthState | None:
    """The user's role and status and whether the login session is revoked, in one query."""
    row = (
        await session.execute(
            select(User.role, User.disabled_at, RefreshFamily.revoked_at, RefreshFamily.id)
            .outerjoin(
                RefreshFamily, (RefreshFamily.id == family_id) & (RefreshFamily.user_id == User.id)
            )
            .where(User.id == user_id)
        )
    ).first()
    if row is None:
        return None
    return AuthState(
        role=row[0],
        disabled=row[1] is not None,
        session_revoked=row[3] is None or row[2] is not None,
    )


async def create_family(session: AsyncSession, user_id: uuid.UUID) -> uuid.UUID:
    """Start a login session (a refresh-token family)."""
    family = RefreshFamily(id=uuid.uuid4(), user_id=user_id)
    session.add(family)
    await session.flush()
    return family.id


async def add_refresh_token(
    session: AsyncSession, family_id: uuid.UUID, digest: bytes, expires_at: datetime
) -> None:
    """Store a refresh token's digest in its family."""
    session.add(
        RefreshToken(id=uuid.uuid4(), family_id=family_id, token_hash=digest, expires_at=expires_at)
    )
    await session.flush()


@dataclass(frozen=True)
class SpentToken:
    """A refresh token just spent by rotation."""

    family_id: uuid.UUID
    user_id: uuid.UUID
    expires_at: datetime


async def spend_refresh_token(session: AsyncSession, digest: bytes) -> SpentToken | None:
    """Mark the token spent if it is unspent and its family live (atomic: one winner per token)."""
    statement = (
        update(RefreshToken)
        .where(
            RefreshToken.token_hash == digest,
            RefreshToken.spent_at.is_(None),
            RefreshToken.family_id == RefreshFamily.id,
            RefreshFamily.revoked_at.is_(None),
        )
        .values(spent_at=func.now())
        .returning(RefreshToken.family_id, RefreshFamily.user_id, RefreshToken.expires_at)
    )
    row = (await session.execute(statement)).first()
    return SpentToken(row[0], row[1], row[2]) if row else None


@dataclass(frozen=True)
class TokenOwner:
    """Whose family a refresh token belongs to, and whether it was already spent or revoked."""

    family_id: uuid.UUID
    user_id: uuid.UUID
    spent: bool
    revoked: bool


async def find_refresh_token(session: AsyncSession, digest: bytes) -> TokenOwner | None:
    """Look a refresh token up by digest, whatever its state."""
    row = (
        await session.execute(
            select(
                RefreshToken.family_id,
                RefreshFamily.user_id,
                RefreshToken.spent_at,
                RefreshFamily.revoked_at,
            )
            .join(RefreshFamily, RefreshFamily.id == RefreshToken.family_id)
            .where(RefreshToken.token_hash == digest)
        )
    ).first()
    if row is None:
        return None
    return TokenOwner(row[0], row[1], row[2] is not None, row[3] is not None)


async def revoke_family(session: AsyncSession, family_id: uuid.UUID, reason: str) -> bool:
    """Revoke a login session; False when it was already revoked."""
    result = await session.execute(
        update(RefreshFamily)
        .where(RefreshFamily.id == family_id, RefreshFamily.revoked_at.is_(None))
        .values(revoked_at=func.now(), revoked_reason=reason)
        .returning(RefreshFamily.id)
    )
    return result.first() is not None


async def stale_pii_rows(session: AsyncSession, current_key_id: str, limit: int) -> Sequence[User]:
    """Users whose personal data is sealed with an older key, locked, skipping rows in use."""
    query = (
        select(User)
        .where(User.pii_key_id.is_not(None), or_(User.pii_key_id != current_key_id))
        .order_by(User.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return (await session.scalars(query)).all()


async def staff_emails(session: AsyncSession) -> list[str]:
    """E-mail addresses of active staff and admins."""
    rows = await session.scalars(
        select(User.email)
        .where(User.role.in_(("staff", "admin")), User.disabled_at.is_(None))
        .order_by(User.email)
    )
    return list(rows.all())


async def prune_sessions(session: AsyncSession, revoked_before: datetime) -> tuple[int, int]:
    """Delete expired refresh tokens and families that are revoked or left without tokens.

    An expired token can never be honoured, so forgetting it loses no reuse
    detection; a live family always keeps its newest, unexpired token.
    """
    tokens = await session.execute(
        delete(RefreshToken).where(RefreshToken.expires_at < func.now()).returning(RefreshToken.id)
    )
    has_token = select(RefreshToken.id).where(RefreshToken.family_id == RefreshFamily.id).exists()
    families = await session.execute(
        delete(RefreshFamily)
        .where(
            or_(
                RefreshFamily.revoked_at < revoked_before,
                (RefreshFamily.created_at < revoked_before) & ~has_token,
            )
        )
        .returning(RefreshFamily.id)
    )
    return len(tokens.all()), len(families.all())
