"""Accounts use cases: users and their personal data, roles, and principal resolution.

Login, refresh and logout live in :mod:`orderly.accounts.sessions`. Services
never commit: the request (or job, or CLI command) owns the transaction.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

from orderly.accounts import repository
from orderly.accounts.passwords import check_password
from orderly.accounts.repository import SealedPii, User
from orderly.accounts.schemas import Address, Principal, Role, UserRead, UserRegister
from orderly.accounts.security import Security
from orderly.accounts.tokens import AccessClaims
from orderly.audit import service as audit
from orderly.audit.schemas import AuditContext
from orderly.core.crypto import FieldCipher
from orderly.core.db import Tx
from orderly.core.limits import Cache
from orderly.core.telemetry import get_logger
from orderly.errors import Conflict, NotFound, Unauthorized

log = get_logger(__name__)

PII_FIELDS = ("name", "phone", "shipping_address")
AUTH_CACHE_TTL_SECONDS = 60
_pending: set[asyncio.Task[None]] = set()


def normalise_email(email: str) -> str:
    """The lookup form of an e-mail address: trimmed and lower-case."""
    return email.strip().lower()


def _context(user_id: uuid.UUID, field: str) -> str:
    # Binds each ciphertext to its row and column: a value copied elsewhere will not open.
    return f"user_account.{field}:{user_id}"


def _seal_pii(user_id: uuid.UUID, cipher: FieldCipher, values: dict[str, str | None]) -> SealedPii:
    def seal(field: str) -> str | None:
        value = values.get(field)
        return cipher.encrypt(value, context=_context(user_id, field)) if value else None

    return SealedPii(
        name=seal("name"),
        phone=seal("phone"),
        shipping_address=seal("shipping_address"),
        key_id=cipher.current_key_id,
    )


def _open(user: User, cipher: FieldCipher, field: str) -> str | None:
    sealed: str | None = getattr(user, field)
    return cipher.decrypt(sealed, context=_context(user.id, field)) if sealed else None


def to_read(user: User, cipher: FieldCipher) -> UserRead:
    """The API view of *user*, personal data decrypted."""
    address = _open(user, cipher, "shipping_address")
    return UserRead(
        id=user.id,
        email=user.email,
        role=user.role,
        name=_open(user, cipher, "name"),
        phone=_open(user, cipher, "phone"),
        shipping_address=Address.model_validate_json(address) if address else None,
        created_at=user.created_at,
    )


# ---------------------------------------------------------------- auth cache


def user_cache_key(user_id: uuid.UUID) -> str:
    """Cache key of a user's authentication state (role, disabled)."""
    return f"auth:user:{user_id}"


def session_cache_key(session_id: uuid.UUID) -> str:
    """Cache key of a login session's state (revoked or not)."""
    return f"auth:session:{session_id}"


async def invalidate(tx: Tx, cache: Cache, *keys: str) -> None:
    """Drop cache entries now and again once the transaction commits.

    The second drop closes the race where a concurrent request re-caches the
    old state between our first drop and our commit.
    """
    await cache.delete(*keys)

    def drop_again() -> None:
        task = asyncio.get_running_loop().create_task(cache.delete(*keys))
        _pending.add(task)
        task.add_done_callback(_pending.discard)

    tx.after_commit(drop_again)


async def resolve_principal(tx: Tx, sec: Security, claims: AccessClaims) -> Principal:
    """The caller behind verified token claims; 401 when the user or login session is gone.

    The role comes from the database (through the cache), not the token, so a
    role change or a revocation takes effect on the next request.
    """
    cache = sec.limits.cache
    keys = [user_cache_key(claims.user_id), session_cache_key(claims.session_id)]
    cached_user, cached_session = await cache.get_many(keys)
    if cached_user is None or cached_session is None:
        state = await repository.auth_state(tx, claims.user_id, claims.session_id)
        if state is None:
            raise Unauthorized("The access token is invalid.")
        cached_user = {"role": state.role.value, "disabled": state.disabled}
        cached_session = {"revoked": state.session_revoked}
        await cache.set(keys[0], cached_user, AUTH_CACHE_TTL_SECONDS)
        await cache.set(keys[1], cached_session, AUTH_CACHE_TTL_SECONDS)
    if cached_user["disabled"] or cached_session["revoked"]:
        raise Unauthorized("The session has ended; log in again.")
    return Principal(claims.user_id, Role(cached_user["role"]), claims.session_id)


# ---------------------------------------------------------------- users


async def _create(
    tx: Tx,
    sec: Security,
    *,
    email: str,
    password: str,
    role: Role,
    pii: dict[str, str | None],
) -> User:
    check_password(password, email=email)
    password_hash = await asyncio.to_thread(sec.passwords.hash, password)
    user_id = uuid.uuid4()
    created = await repository.insert_user(
        tx,
        user_id=user_id,
        email=email,
        password_hash=password_hash,
        role=role,
        pii=_seal_pii(user_id, sec.cipher, pii),
    )
    if created is None:
        raise Conflict("An account with this e-mail address already exists.")
    return created


async def register(tx: Tx, sec: Security, data: UserRegister, context: AuditContext) -> UserRead:
    """Create a customer account (the role is never the client's choice)."""
    address = data.shipping_address.model_dump_json() if data.shipping_address else None
    user = await _create(
        tx,
        sec,
        email=normalise_email(str(data.email)),
        password=data.password,
        role=Role.customer,
        pii={"name": data.name, "phone": data.phone, "shipping_address": address},
    )
    await audit.record(
        tx,
        context.with_actor(user.id, user.role.value),
        "user.registered",
        target_type="user",
        target_id=user.id,
    )
    log.info("user_registered", user_id=str(user.id))
    return to_read(user, sec.cipher)


async def create_user(
    tx: Tx,
    sec: Security,
    *,
    email: str,
    password: str,
    role: Role,
    context: AuditContext,
    name: str | None = None,
) -> UserRead:
    """Create an account with any role (the operator's bootstrap path, ``orderly user create``)."""
    user = await _create(
        tx,
        sec,
        email=normalise_email(email),
        password=password,
        role=role,
        pii={"name": name, "phone": None, "shipping_address": None},
    )
    await audit.record(
        tx,
        context,
        "user.created",
        target_type="user",
        target_id=user.id,
        details={"role": role.value},
    )
    log.info("user_created", user_id=str(user.id), role=role.value)
    return to_read(user, sec.cipher)


async def get_user(tx: Tx, sec: Security, principal: Principal, user_id: uuid.UUID) -> UserRead:
    """A user as *principal* may see it; 404 for another customer's account (no enumeration)."""
    if not principal.may_see(user_id):
        raise NotFound("No such user.")
    user = await repository.get(tx, user_id)
    if user is None:
        raise NotFound("No such user.")
    return to_read(user, sec.cipher)


async def change_role(
    tx: Tx,
    sec: Security,
    user_id: uuid.UUID,
    role: Role,
    context: AuditContext,
) -> UserRead:
    """Set a user's role (admin routes only); audited; never demotes the last admin."""
    user = await repository.get(tx, user_id, for_update=True)
    if user is None:
        raise NotFound("No such user.")
    previous = user.role
    demoting_admin = previous == Role.admin and role != Role.admin
    if demoting_admin and await repository.count_admins_locked(tx) <= 1:
        raise Conflict("The last admin cannot be demoted.")
    if previous != role:
        user = await repository.set_role(tx, user.id, role)
        await invalidate(tx, sec.limits.cache, user_cache_key(user.id))
    await audit.record(
        tx,
        context,
        "user.role_changed",
        target_type="user",
        target_id=user.id,
        details={"from": previous.value, "to": role.value},
    )
    log.info(
        "user_role_changed", user_id=str(user.id), role_from=previous.value, role_to=role.value
    )
    return to_read(user, sec.cipher)


@dataclass(frozen=True, slots=True)
class Contact:
    """How to address a user in a message (e-mail and decrypted name)."""

    user_id: uuid.UUID
    email: str
    name: str | None


async def contact(tx: Tx, user_id: uuid.UUID | str, cipher: FieldCipher | None = None) -> Contact:
    """The user's e-mail and, when *cipher* is given, their name; NotFound for no such user."""
    user = await repository.get(tx, uuid.UUID(str(user_id)))
    if user is None:
        raise NotFound("No such user.")
    name = _open(user, cipher, "name") if cipher is not None else None
    return Contact(user.id, user.email, name)


async def find_id_by_email(tx: Tx, email: str) -> uuid.UUID | None:
    """The id of the account with *email* (normalised), or None (staff search)."""
    user = await repository.get_by_email(tx, normalise_email(email))
    return user.id if user is not None else None


async def staff_emails(tx: Tx) -> list[str]:
    """Where staff alerts go: the e-mail of every active staff member and admin."""
    return await repository.staff_emails(tx)


# ---------------------------------------------------------------- key rotation


async def reencrypt_pii(tx: Tx, cipher: FieldCipher, *, batch: int = 200) -> int:
    """Re-seal one batch of users' personal data under the newest key; returns rows changed."""
    rows = await repository.stale_pii_rows(tx, cipher.current_key_id, batch)
    resealed = [
        (user.id, _seal_pii(user.id, cipher, {f: _open(user, cipher, f) for f in PII_FIELDS}))
        for user in rows
    ]
    if resealed:
        await repository.update_pii(tx, resealed)
    return len(rows)
