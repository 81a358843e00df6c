"""Authentication and authorization for every route: each one declares a policy.

A route is either public (``dependencies=[PUBLIC]``) or names its roles
through a principal dependency::

    @router.get("/orders/{id}")
    async def read(user: CurrentUser, ...)          # any signed-in user
    async def adjust(user: StaffUser, ...)          # staff or admin
    async def grant(user: AdminUser, ...)           # admin only
    async def custom(user: Annotated[Principal, Depends(require_roles(Role.staff))], ...)
    @router.get("/things", dependencies=[PUBLIC])
    async def list(user: OptionalUser, ...)         # anyone; the caller when a token is sent

Enforcement is central in two ways: the ``/v1`` router carries
:data:`DENY_UNDECLARED`, which refuses any route that declared nothing (deny by
default), and ``tests/accounts/test_route_policy.py`` fails the build for such
a route. Resource ownership stays the service's job: use
``Principal.may_see(owner_id)`` and answer 404 to strangers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from orderly.accounts.schemas import ALL_ROLES, STAFF_ROLES, Principal, Role
from orderly.accounts.service import resolve_principal
from orderly.api.deps import SecurityRuntime, Transaction
from orderly.audit.schemas import AuditContext
from orderly.core.telemetry import current_request_id
from orderly.errors import Forbidden, Unauthorized

__all__ = [
    "DENY_UNDECLARED",
    "PUBLIC",
    "PUBLIC_BY_DESIGN",
    "AdminUser",
    "CurrentUser",
    "OptionalUser",
    "Origin",
    "Policy",
    "Principal",
    "Role",
    "RouteInfo",
    "StaffUser",
    "app_routes",
    "declare_roles",
    "require_roles",
    "route_policy",
    "unguarded_routes",
]

POLICY_ATTR = "__orderly_policy__"
WWW_AUTHENTICATE = {"WWW-Authenticate": 'Bearer realm="orderly"'}

# Outside /v1 and public by design: probes, metrics (scraped on the private network), API docs.
PUBLIC_BY_DESIGN: frozenset[str] = frozenset(
    {"/livez", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
)


@dataclass(frozen=True)
class Policy:
    """Who may call a route: anyone (``public``) or principals with one of ``roles``."""

    roles: frozenset[Role]
    public: bool = False


def _declare(policy: Policy) -> Callable[[Any], Any]:
    def tag(dependency: Any) -> Any:
        setattr(dependency, POLICY_ATTR, policy)
        return dependency

    return tag


async def _origin(request: Request) -> AuditContext:
    user_agent = request.headers.get("user-agent")
    return AuditContext(
        ip=request.client.host if request.client else None,
        user_agent=user_agent[:512] if user_agent else None,
        request_id=current_request_id(),
    )


Origin = Annotated[AuditContext, Depends(_origin)]
"""Where the request comes from (IP, user agent, request id); add the actor with ``with_actor``."""


# ---------------------------------------------------------------- authentication

_bearer = HTTPBearer(auto_error=False, description="Access token from POST /v1/auth/token")


async def _authenticate(
    request: Request,
    tx: Transaction,
    security: SecurityRuntime,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        raise Unauthorized("An access token is required.", headers=WWW_AUTHENTICATE)
    try:
        claims = security.tokens.verify(credentials.credentials)
        principal = await resolve_principal(tx, security, claims)
    except Unauthorized as exc:
        exc.headers.update(WWW_AUTHENTICATE)
        raise
    request.state.principal = principal
    return principal


async def _optional_principal(
    request: Request,
    tx: Transaction,
    security: SecurityRuntime,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal | None:
    if credentials is None:
        return None
    return await _authenticate(request, tx, security, credentials)


OptionalUser = Annotated[Principal | None, Depends(_optional_principal)]
"""On a PUBLIC route: the caller if a bearer token is sent (an invalid one → 401), else None.

Declares no policy: the route still declares ``PUBLIC`` itself.
"""


def require_roles(*roles: Role | str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that authenticates the caller and admits only *roles* (else 401/403)."""
    allowed = frozenset(Role(role) for role in roles)
    if not allowed:
        raise ValueError("require_roles needs at least one role; use PUBLIC for open routes")

    async def principal_with_role(
        principal: Annotated[Principal, Depends(_authenticate)],
    ) -> Principal:
        if principal.role not in allowed:
            raise Forbidden("Your role does not allow this action.")
        return principal

    _declare(Policy(allowed))(principal_with_role)
    return principal_with_role


authenticated = require_roles(*ALL_ROLES)
CurrentUser = Annotated[Principal, Depends(authenticated)]
"""Any signed-in user (customer, staff or admin)."""
StaffUser = Annotated[Principal, Depends(require_roles(*STAFF_ROLES))]
"""Staff or admin."""
AdminUser = Annotated[Principal, Depends(require_roles(Role.admin))]
"""Admin only."""


@_declare(Policy(frozenset(), public=True))
async def public() -> None:
    """Marks a route as open to anonymous callers (a deliberate, visible decision)."""


PUBLIC = Depends(public)


def declare_roles(dependency: Callable[..., Any], *roles: Role) -> None:
    """Declare the roles a custom principal dependency admits (e.g. the console's cookie)."""
    if not roles:
        raise ValueError("declare_roles needs at least one role; use PUBLIC for open routes")
    _declare(Policy(frozenset(roles)))(dependency)


# ---------------------------------------------------------------- policy inspection


def _declared(dependant: Any) -> Iterator[Policy]:
    for sub in dependant.dependencies:
        policy = getattr(sub.call, POLICY_ATTR, None)
        if isinstance(policy, Policy):
            yield policy
        yield from _declared(sub)


def route_policy(route: Any) -> Policy | None:
    """The effective policy of a route: the roles every declared policy admits, or None."""
    dependant = getattr(route, "dependant", None)
    policies = list(_declared(dependant)) if dependant is not None else []
    if getattr(route, "declared_public", False):  # PUBLIC, kept off the per-request path
        policies.append(Policy(frozenset(), public=True))
    role_policies = [p for p in policies if not p.public]
    if role_policies:
        roles = frozenset.intersection(*(p.roles for p in role_policies))
        return Policy(roles)
    if policies:
        return Policy(frozenset(), public=True)
    return None


@dataclass(frozen=True)
class RouteInfo:
    """One served route as the app exposes it (prefixes of included routers applied)."""

    path: str
    methods: frozenset[str]
    is_api_route: bool
    policy: Policy | None


def app_routes(app: FastAPI) -> list[RouteInfo]:
    """Every route of *app* with its effective path and policy (included routers flattened)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before lazy router inclusion: app.routes is already flat
        contexts: list[Any] = list(app.routes)
    else:
        contexts = list(iter_route_contexts(app.routes))
    routes = []
    for context in contexts:
        original = getattr(context, "original_route", context)
        is_api = isinstance(original, APIRoute)
        routes.append(
            RouteInfo(
                path=str(getattr(context, "path", "") or ""),
                methods=frozenset(getattr(context, "methods", None) or ()),
                is_api_route=is_api,
                policy=route_policy(context) if is_api else None,
            )
        )
    return routes


def unguarded_routes(app: FastAPI) -> list[str]:
    """``METHOD path`` of every route with no declared policy (outside PUBLIC_BY_DESIGN)."""
    return [
        f"{','.join(sorted(route.methods)) or '*'} {route.path}"
        for route in app_routes(app)
        if route.path not in PUBLIC_BY_DESIGN and route.policy is None
    ]


async def _deny_undeclared(request: Request) -> None:
    route: Any = request.scope.get("route")
    declared: bool | None = getattr(route, "_orderly_policy_declared", None)
    if declared is None:
        declared = route_policy(route) is not None
        with contextlib.suppress(AttributeError):  # memoise per route when the object allows
            setattr(route, "_orderly_policy_declared", declared)  # noqa: B010
    if not declared:
        raise Forbidden("This route declares no access policy.")


DENY_UNDECLARED = Depends(_deny_undeclared)
"""Router-level guard: a route that declared no policy refuses every caller (deny by default)."""
