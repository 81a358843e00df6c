"""Login sessions: password login with brute-force limits, refresh rotation, logout.

A login starts a *family*; each refresh spends the presented token and issues
the next one in the family. Presenting a spent token again means it was
copied: the whole family is revoked (its access tokens stop working too, since
principal resolution checks the family). Refusals that must leave evidence (an
audit event, a revoked family) raise errors marked ``committing_effects()``, so
the request's transaction still commits them.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from limits import RateLimitItem
from prometheus_client import Counter

from orderly.accounts import repository
from orderly.accounts.schemas import Principal, Role, TokenPair, TokenRequest
from orderly.accounts.security import Security
from orderly.accounts.service import (
    invalidate,
    normalise_email,
    session_cache_key,
)
from orderly.accounts.tokens import issue_access_token
from orderly.audit import service as audit
from orderly.audit.schemas import AuditContext
from orderly.core.crypto import opaque_token, token_digest
from orderly.core.db import Tx
from orderly.core.inputs import NUL
from orderly.core.telemetry import REGISTRY, get_logger
from orderly.errors import InvalidInput, Unauthorized

log = get_logger(__name__)

LOGIN_ATTEMPTS = Counter(
    "orderly_login_attempts_total",
    "Password logins by outcome (succeeded, failed, rate_limited).",
    ["outcome"],
    registry=REGISTRY,
)
TOKEN_REFRESHES = Counter(
    "orderly_token_refreshes_total",
    "Refresh-token uses by outcome (rotated, rejected, reuse_detected).",
    ["outcome"],
    registry=REGISTRY,
)

BAD_CREDENTIALS = "Invalid e-mail or password."
BAD_REFRESH = "The refresh token is invalid or has been revoked."
TOO_MANY = "Too many failed logins; try again later."
# One client address may fail this many times the per-account allowance (shared NATs, offices).
IP_LIMIT_FACTOR = 5
# An account's failures from every client are counted (up to this multiple) to slow guessing.
ACCOUNT_COUNT_FACTOR = 100
DELAY_BASE_SECONDS = 0.25
DELAY_MAX_SECONDS = 4.0


def login_limits(sec: Security) -> tuple[RateLimitItem, RateLimitItem]:
    """Failure allowances from ORDERLY_LOGIN_RATE_LIMIT: per account *and* client, per client."""
    per_account = sec.limits.limiter.item(sec.settings.login_rate_limit)
    per_ip = type(per_account)(per_account.amount * IP_LIMIT_FACTOR, per_account.multiples)
    return per_account, per_ip


def guess_delay(failures: int, allowance: int) -> float:
    """How long any login on an account waits once it has failed *failures* times (all clients).

    Nothing until one client's allowance is used up, then 0.25 s doubling to at
    most 4 s: guessing from many addresses slows down, the owner is never locked out.
    """
    if failures < allowance:
        return 0.0
    return min(DELAY_MAX_SECONDS, DELAY_BASE_SECONDS * float(2 ** min(failures - allowance, 8)))


async def _issue(
    tx: Tx, sec: Security, user_id: uuid.UUID, role: Role, family_id: uuid.UUID
) -> TokenPair:
    refresh = opaque_token()
    expires_at = datetime.now(UTC) + timedelta(seconds=sec.settings.refresh_token_ttl_seconds)
    await repository.add_refresh_token(tx, family_id, token_digest(refresh), expires_at)
    access, ttl = issue_access_token(sec.settings, user_id=user_id, role=role, session_id=family_id)
    return TokenPair(access_token=access, expires_in=ttl, refresh_token=refresh)


async def login(
    tx: Tx,
    sec: Security,
    data: TokenRequest,
    context: AuditContext,
) -> TokenPair:
    """Exchange e-mail and password for a token pair, or refuse with one generic message.

    Unknown e-mail and wrong password take the same path and time (a dummy hash
    is verified). Failures count per account *and* client address (the
    allowance, ORDERLY_LOGIN_RATE_LIMIT) and per client address (five times
    that, across accounts); once either is used up, that client gets 429 even
    with the right password until the window moves on. Others — the owner on
    their own address — are not locked out: the account's failures from every
    client only add a progressive delay (:func:`guess_delay`) to its logins.

    A NUL character (which no stored e-mail or password can hold) is a failed
    attempt like any other — counted against the account it names and the
    client, audited — answered 422 rather than 401.
    """
    malformed = NUL in data.email or NUL in data.password
    email = normalise_email(data.email.replace(NUL, ""))
    limiter = sec.limits.limiter
    per_account, per_ip = login_limits(sec)
    account_wide = type(per_account)(
        per_account.amount * ACCOUNT_COUNT_FACTOR, per_account.multiples
    )
    ip = context.ip or "unknown"
    client_keys = ("login", "account", email, ip)
    seen = await limiter.peek(account_wide, "login", "account", email)
    delay = guess_delay(seen.limit - seen.remaining, per_account.amount)
    if delay:  # before the first statement: the wait holds no database connection
        await asyncio.sleep(delay)
    await repository.lock_login(tx, email)
    for item, keys in ((per_account, client_keys), (per_ip, ("login", "ip", ip))):
        status = await limiter.peek(item, *keys)
        if not status.allowed:
            LOGIN_ATTEMPTS.labels("rate_limited").inc()
            log.warning("login_rate_limited", scope=keys[1])
            raise status.error(TOO_MANY).committing_effects()

    user = await repository.get_by_email(tx, email)
    if malformed:
        await asyncio.to_thread(sec.passwords.burn, data.password.replace(NUL, ""))
        reason = "malformed"
    elif user is None:
        await asyncio.to_thread(sec.passwords.burn, data.password)
        reason = "unknown_account"
    elif not await asyncio.to_thread(sec.passwords.verify, user.password_hash, data.password):
        reason = "wrong_password"
    elif user.disabled_at is not None:
        reason = "disabled"
    else:
        reason = None

    if reason is not None or user is None:
        account_status = await limiter.hit(per_account, *client_keys)
        ip_status = await limiter.hit(per_ip, "login", "ip", ip)
        await limiter.hit(account_wide, "login", "account", email)
        actor = context.with_actor(user.id, user.role.value) if user else context
        await audit.record(
            tx,
            actor,
            "auth.login_failed",
            target_type="user" if user else None,
            target_id=user.id if user else None,
            details={"reason": reason or "unknown_account"},
        )
        LOGIN_ATTEMPTS.labels("failed").inc()
        log.warning("login_failed", reason=reason, user_id=str(user.id) if user else None)
        for status in (account_status, ip_status):
            if not status.allowed or status.remaining == 0:
                raise status.error(TOO_MANY).committing_effects()
        if malformed:
            field = "email" if NUL in data.email else "password"
            raise InvalidInput("must not contain NUL characters", field=field).committing_effects()
        raise Unauthorized(BAD_CREDENTIALS).committing_effects()

    if sec.passwords.needs_rehash(user.password_hash):
        rehashed = await asyncio.to_thread(sec.passwords.hash, data.password)
        await repository.set_password_hash(tx, user.id, rehashed)
        log.info("password_rehashed", user_id=str(user.id))
    await limiter.reset(per_account, *client_keys)
    family_id = await repository.create_family(tx, user.id)
    pair = await _issue(tx, sec, user.id, user.role, family_id)
    LOGIN_ATTEMPTS.labels("succeeded").inc()
    log.info("login_succeeded", user_id=str(user.id))
    return pair


async def refresh(tx: Tx, sec: Security, refresh_token: str, context: AuditContext) -> TokenPair:
    """Spend a refresh token for a new pair; a spent token presented again revokes its family."""
    digest = token_digest(refresh_token)
    spent = await repository.spend_refresh_token(tx, digest)
    if spent is not None:
        state = await repository.auth_state(tx, spent.user_id, spent.family_id)
        if spent.expires_at <= datetime.now(UTC) or state is None or state.disabled:
            TOKEN_REFRESHES.labels("rejected").inc()
            raise Unauthorized(BAD_REFRESH).committing_effects()
        pair = await _issue(tx, sec, spent.user_id, state.role, spent.family_id)
        TOKEN_REFRESHES.labels("rotated").inc()
        return pair

    owner = await repository.find_refresh_token(tx, digest)
    if owner is not None and owner.spent and not owner.revoked:
        await repository.revoke_family(tx, owner.family_id, "refresh_token_reused")
        await invalidate(tx, sec.limits.cache, session_cache_key(owner.family_id))
        await audit.record(
            tx,
            context.with_actor(owner.user_id, None),
            "auth.refresh_token_reused",
            target_type="session",
            target_id=owner.family_id,
            details={"effect": "session revoked"},
        )
        TOKEN_REFRESHES.labels("reuse_detected").inc()
        log.warning("refresh_token_reused", user_id=str(owner.user_id))
    else:
        TOKEN_REFRESHES.labels("rejected").inc()
    raise Unauthorized(BAD_REFRESH).committing_effects()


async def logout(tx: Tx, sec: Security, principal: Principal, refresh_token: str | None) -> None:
    """End the caller's login session (and the one of *refresh_token*, if it is the caller's)."""
    families = {principal.session_id} if principal.session_id else set()
    if refresh_token:
        owner = await repository.find_refresh_token(tx, token_digest(refresh_token))
        if owner is not None and owner.user_id == principal.id:
            families.add(owner.family_id)
    for family_id in families:
        await repository.revoke_family(tx, family_id, "logout")
    await invalidate(tx, sec.limits.cache, *(session_cache_key(f) for f in families))
    log.info("logout", user_id=str(principal.id))


async def prune(tx: Tx, *, older_than: timedelta) -> tuple[int, int]:
    """Forget expired refresh tokens and sessions revoked or idle for *older_than*."""
    return await repository.prune_sessions(tx, datetime.now(UTC) - older_than)
