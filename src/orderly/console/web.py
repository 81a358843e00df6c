"""The console's plumbing: its route class, who is signed in, CSRF-checked forms, rendering.

Console routes run like API routes (one unit of work, committed before the
response: :class:`~orderly.api.routing.OrderlyRoute`), but answer people, not
programs: a domain error becomes an HTML page with the same status, and a
missing or ended session sends the browser to the sign-in page.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.responses import HTMLResponse, RedirectResponse, Response

from orderly import errors
from orderly.accounts.schemas import STAFF_ROLES, Principal, Role
from orderly.accounts.service import resolve_principal
from orderly.api import problems
from orderly.api.auth import DENY_UNDECLARED, Origin, declare_roles
from orderly.api.deps import AppRuntime, SecurityRuntime, Transaction
from orderly.api.routing import OrderlyRoute
from orderly.audit.schemas import AuditContext
from orderly.console import session
from orderly.core.telemetry import current_request_id

PREFIX = "/console"
SIGN_IN = PREFIX + "/sign-in"

NAV: tuple[tuple[str, str, frozenset[Role]], ...] = (
    ("Overview", PREFIX + "/", STAFF_ROLES),
    ("Orders", PREFIX + "/orders", STAFF_ROLES),
    ("Jobs", PREFIX + "/jobs", frozenset({Role.admin})),
    ("Flags", PREFIX + "/flags", frozenset({Role.admin})),
    ("Incidents", PREFIX + "/incidents", STAFF_ROLES),
    ("SLOs", PREFIX + "/slos", STAFF_ROLES),
    ("Analytics", PREFIX + "/analytics", STAFF_ROLES),
    ("Audit", PREFIX + "/audit", frozenset({Role.admin})),
)

# Messages shown after an action (redirect-after-POST carries only the key, never text).
NOTICES = {
    "signed-out": "You are signed out.",
    "cancelled": "The order is cancelled.",
    "refunded": "The order is refunded.",
    "retried": "The job is queued again.",
    "rollout": "The rollout is changed.",
    "killed": "The flag is switched off everywhere.",
    "enabled": "The flag is switched on.",
    "release": "The release plan is updated.",
    "opened": "The incident is open.",
    "noted": "The note is added to the timeline.",
    "status": "The incident's status is changed.",
}


def _money(cents: int, currency: str = "") -> str:
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), 100)
    return f"{sign}{whole:,}.{part:02d} {currency}".strip()


def _when(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _percent(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f} %"


TEMPLATES = Environment(
    loader=PackageLoader("orderly.console", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
TEMPLATES.filters.update(money=_money, when=_when, age=_age, percent=_percent)


def render(
    request: Request,
    template: str,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    """A page (or an htmx fragment) with the signed-in user's navigation and CSRF token."""
    principal: Principal | None = getattr(request.state, "principal", None)
    settings = request.app.state.runtime.settings
    csrf = (
        session.csrf_token(settings, principal.session_id)
        if principal is not None and principal.session_id is not None
        else None
    )
    nav = [(label, href) for label, href, roles in NAV if principal and principal.role in roles]
    notice = NOTICES.get(request.query_params.get("done", ""))
    body = TEMPLATES.get_template(template).render(
        request_path=request.url.path,
        principal=principal,
        is_admin=principal is not None and principal.role == Role.admin,
        csrf_token=csrf,
        nav=nav,
        notice=notice,
        request_id=current_request_id(),
        **context,
    )
    # Same-origin referrers let the browser send a real Origin with the page's form posts
    # (under "no-referrer" Chromium sends "Origin: null"), which _same_origin checks.
    return HTMLResponse(
        body,
        status_code=status_code,
        headers={"Referrer-Policy": "same-origin", **(headers or {})},
    )


def see_other(path: str, done: str | None = None) -> RedirectResponse:
    """Redirect-after-POST to a console page, optionally with a notice key."""
    return RedirectResponse(path + (f"?done={done}" if done else ""), status_code=303)


def clear_session(response: Response) -> Response:
    """Forget the session cookie in the browser."""
    response.delete_cookie(
        session.COOKIE, path=session.COOKIE_PATH, httponly=True, samesite="strict"
    )
    return response


class ConsoleRoute(OrderlyRoute):
    """A console page: one unit of work; errors become pages, a lost session the sign-in."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap the unit of work so every refusal answers as HTML."""
        handler = super().get_route_handler()

        async def page(request: Request) -> Response:
            try:
                return await handler(request)
            except errors.Unauthorized:
                target = SIGN_IN
                if request.method == "GET" and request.url.path != SIGN_IN:
                    target += "?next=" + quote(request.url.path, safe="/")
                if request.headers.get("hx-request"):
                    return clear_session(Response(status_code=204, headers={"HX-Redirect": target}))
                return clear_session(RedirectResponse(target, status_code=303))
            except errors.OrderlyError as error:
                status = problems.status_for(error)
                return render(
                    request, "error.html", status_code=status, status=status,
                    title=error.title, detail=error.detail, headers=error.headers or None,
                )  # fmt: skip
            except RequestValidationError as error:
                fields = ", ".join(str(e.get("loc", ["?"])[-1]) for e in error.errors())
                return render(
                    request, "error.html", status_code=422, status=422,
                    title="Invalid input", detail=f"Check these fields: {fields}.",
                )  # fmt: skip

        return page


def console_router() -> APIRouter:
    """The console's router: every route a :class:`ConsoleRoute`, deny by default."""
    return APIRouter(
        prefix=PREFIX,
        route_class=ConsoleRoute,
        dependencies=[DENY_UNDECLARED],
        include_in_schema=False,
    )


# ---------------------------------------------------------------- who is signed in


async def _session_principal(
    request: Request, tx: Transaction, security: SecurityRuntime
) -> Principal:
    value = request.cookies.get(session.COOKIE)
    if not value:
        raise errors.Unauthorized("Please sign in.")
    claims = session.verify(security.settings, value)
    principal = await resolve_principal(tx, security, claims)
    request.state.principal = principal
    return principal


async def console_staff(principal: Annotated[Principal, Depends(_session_principal)]) -> Principal:
    """Staff or admin, signed in to the console (customers are refused: 403)."""
    if principal.role not in STAFF_ROLES:
        raise errors.Forbidden("The console is for staff; customers use the shop.")
    return principal


async def console_admin(principal: Annotated[Principal, Depends(_session_principal)]) -> Principal:
    """Admin, signed in to the console."""
    if principal.role != Role.admin:
        raise errors.Forbidden("Only an admin may do this.")
    return principal


declare_roles(console_staff, *STAFF_ROLES)
declare_roles(console_admin, Role.admin)
StaffSession = Annotated[Principal, Depends(console_staff)]
AdminSession = Annotated[Principal, Depends(console_admin)]


# ---------------------------------------------------------------- forms


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None  # SameSite=Strict already keeps the cookie off cross-site posts
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


async def read_form(request: Request) -> dict[str, str]:
    """The urlencoded body as a dict (first value of each field)."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        raise errors.Forbidden("Forms are posted as application/x-www-form-urlencoded.")
    body = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


async def _checked_form(
    request: Request,
    runtime: AppRuntime,
    principal: Annotated[Principal, Depends(_session_principal)],
) -> dict[str, str]:
    form = await read_form(request)
    assert principal.session_id is not None  # console sessions always name their family
    expected = session.csrf_token(runtime.settings, principal.session_id)
    if not _same_origin(request) or not session.same(form.get("csrf_token"), expected):
        raise errors.Forbidden("The form's security token is missing or stale; reload the page.")
    return form


Form = Annotated[dict[str, str], Depends(_checked_form)]
"""A posted form whose CSRF token matched the session's (else 403 before any work)."""


def acting(origin: AuditContext, principal: Principal) -> AuditContext:
    """The audit context of a console action: the request's origin, the signed-in actor."""
    return origin.with_actor(principal.id, principal.role)


__all__ = [
    "PREFIX",
    "SIGN_IN",
    "AdminSession",
    "ConsoleRoute",
    "Form",
    "Origin",
    "StaffSession",
    "acting",
    "clear_session",
    "console_router",
    "read_form",
    "render",
    "see_other",
]
