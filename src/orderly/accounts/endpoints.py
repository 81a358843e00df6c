"""Accounts routes: /v1/auth/* and /v1/users/*. Thin: parse, call one service function."""

from __future__ import annotations

import uuid

from starlette.status import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from orderly.accounts import service, sessions
from orderly.accounts.schemas import (
    LogoutRequest,
    RefreshRequest,
    RoleUpdate,
    TokenPair,
    TokenRequest,
    UserRead,
    UserRegister,
)
from orderly.api.auth import (
    PUBLIC,
    AdminUser,
    CurrentUser,
    Origin,
)
from orderly.api.deps import SecurityRuntime, Transaction
from orderly.api.problems import responses_for
from orderly.api.routing import NO_STORE, domain_router
from orderly.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    RateLimited,
    Unauthorized,
)

router = domain_router(tags=["accounts"])


@router.post(
    "/auth/register",
    status_code=HTTP_201_CREATED,
    dependencies=[PUBLIC],
    responses=responses_for(InvalidInput, Conflict),
)
async def register(
    data: UserRegister, tx: Transaction, security: SecurityRuntime, origin: Origin
) -> UserRead:
    """Create a customer account."""
    return await service.register(tx, security, data, origin)


@router.post(
    "/auth/token",
    dependencies=[PUBLIC, NO_STORE],
    response_model=TokenPair,
    responses=responses_for(Unauthorized, RateLimited, InvalidInput),
)
async def token(
    data: TokenRequest, tx: Transaction, security: SecurityRuntime, origin: Origin
) -> TokenPair:
    """Exchange e-mail and password for an access and a refresh token."""
    return await sessions.login(tx, security, data, origin)


@router.post(
    "/auth/refresh",
    dependencies=[PUBLIC, NO_STORE],
    response_model=TokenPair,
    responses=responses_for(Unauthorized, InvalidInput),
)
async def refresh(
    data: RefreshRequest, tx: Transaction, security: SecurityRuntime, origin: Origin
) -> TokenPair:
    """Spend a refresh token for a new pair (reusing a spent one ends the session)."""
    return await sessions.refresh(tx, security, data.refresh_token, origin)


@router.post(
    "/auth/logout",
    status_code=HTTP_204_NO_CONTENT,
    responses=responses_for(Unauthorized, InvalidInput),
)
async def logout(
    user: CurrentUser,
    tx: Transaction,
    security: SecurityRuntime,
    data: LogoutRequest | None = None,
) -> None:
    """End the current login session (its refresh tokens and access tokens stop working)."""
    await sessions.logout(tx, security, user, data.refresh_token if data else None)


@router.get("/users/me", responses=responses_for(Unauthorized))
async def read_me(user: CurrentUser, tx: Transaction, security: SecurityRuntime) -> UserRead:
    """The caller's own account."""
    return await service.get_user(tx, security, user, user.id)


@router.get("/users/{user_id}", responses=responses_for(Unauthorized, NotFound))
async def read_user(
    user_id: uuid.UUID, user: CurrentUser, tx: Transaction, security: SecurityRuntime
) -> UserRead:
    """A user: yourself, or anyone for staff and admins (others' accounts answer 404)."""
    return await service.get_user(tx, security, user, user_id)


@router.patch(
    "/users/{user_id}/role",
    responses=responses_for(Unauthorized, Forbidden, NotFound, Conflict, InvalidInput),
)
async def change_role(
    user_id: uuid.UUID,
    data: RoleUpdate,
    admin: AdminUser,
    tx: Transaction,
    security: SecurityRuntime,
    origin: Origin,
) -> UserRead:
    """Set a user's role (admin); audited."""
    context = origin.with_actor(admin.id, admin.role)
    return await service.change_role(tx, security, user_id, data.role, context)
