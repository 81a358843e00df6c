"""The ops console's pages (``/console``): thin handlers over the domains' services.

Each handler reads or changes through one service call, as API endpoints do;
every change is a CSRF-checked form post that redirects back (or, asked by
htmx, answers the fragment it replaces). Who may see what follows the API's
roles: staff and admins sign in; jobs, flags and the audit log are admin-only
(hidden from staff in the navigation and refused by the server).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from importlib import resources
from typing import Annotated

from fastapi import FastAPI, Query, Request
from pydantic import ValidationError
from starlette.responses import RedirectResponse, Response

from orderly import errors
from orderly.accounts import service as accounts_service
from orderly.accounts import sessions
from orderly.accounts.schemas import STAFF_ROLES, Principal, TokenRequest
from orderly.analytics import service as analytics_service
from orderly.api.auth import PUBLIC, Origin
from orderly.api.deps import AppRuntime, Page, SecurityRuntime, Transaction, keyset_after
from orderly.api.deps import keyset_cursor as next_cursor
from orderly.audit import service as audit_service
from orderly.console import pages, session
from orderly.console.web import (
    PREFIX,
    SIGN_IN,
    AdminSession,
    Form,
    StaffSession,
    acting,
    clear_session,
    console_router,
    read_form,
    render,
    see_other,
)
from orderly.flags import release
from orderly.flags import service as flags_service
from orderly.incidents import postmortem, slo
from orderly.incidents import service as incidents_service
from orderly.incidents.schemas import IncidentCreate, IncidentStatus, IncidentUpdate, Severity
from orderly.jobs import service as jobs_service
from orderly.jobs.schemas import JobStatus
from orderly.orders import actions as order_actions
from orderly.orders import service as orders_service
from orderly.orders.schemas import OrderRead, OrderStatus

router = console_router()

_STATIC = {
    "htmx.min.js": "text/javascript; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "htmx.LICENSE.txt": "text/plain; charset=utf-8",
}


def mount_console(app: FastAPI) -> None:
    """Put the console's routes on the app's router (flat, like ``api.router.mount_api``)."""
    app.router.routes.extend(router.routes)


@router.get("/static/{name}", dependencies=[PUBLIC])
async def static(name: str) -> Response:
    """The console's own JavaScript, CSS and licences, shipped in the package."""
    media_type = _STATIC.get(name)
    if media_type is None:
        raise errors.NotFound("No such file.")
    body = resources.files("orderly.console").joinpath("static", name).read_bytes()
    return Response(body, media_type=media_type, headers={"Cache-Control": "public, max-age=3600"})


# ---------------------------------------------------------------- sign-in


def _safe_next(value: str | None) -> str:
    if (
        value
        and value.startswith(PREFIX + "/")
        and not value.startswith("//")
        and "\\" not in value
    ):
        return value
    return PREFIX + "/"


@router.get("/sign-in", dependencies=[PUBLIC])
async def sign_in_page(request: Request, security: SecurityRuntime) -> Response:
    """The sign-in form (its CSRF token is bound to a pre-session cookie)."""
    return _sign_in_form(request, security, status_code=200, error=None)


def _sign_in_form(
    request: Request, security: SecurityRuntime, *, status_code: int, error: str | None
) -> Response:
    nonce = request.cookies.get(session.SIGNIN_COOKIE) or session.signin_nonce()
    response = render(
        request, "sign_in.html", status_code=status_code, error=error,
        signin_token=session.signin_token(security.settings, nonce),
        next=_safe_next(request.query_params.get("next")),
    )  # fmt: skip
    response.set_cookie(
        session.SIGNIN_COOKIE, nonce, path=session.COOKIE_PATH, httponly=True,
        samesite="strict", secure=request.url.scheme == "https", max_age=3600,
    )  # fmt: skip
    return response


@router.post("/sign-in", dependencies=[PUBLIC])
async def sign_in(
    request: Request, tx: Transaction, security: SecurityRuntime, origin: Origin
) -> Response:
    """Check e-mail and password through accounts' login (limits, audit); staff get a session."""
    form = await read_form(request)
    nonce = request.cookies.get(session.SIGNIN_COOKIE, "")
    if not nonce or not session.same(
        form.get("csrf_token"), session.signin_token(security.settings, nonce)
    ):
        raise errors.Forbidden("The sign-in form expired; reload the page and try again.")
    try:
        credentials = TokenRequest(email=form.get("email", ""), password=form.get("password", ""))
    except ValidationError:
        return _sign_in_form(
            request, security, status_code=422, error="Enter your e-mail and password."
        )
    try:
        pair = await sessions.login(tx, security, credentials, origin)
    except (errors.Unauthorized, errors.RateLimited) as refusal:
        # Returning (not raising) commits the refusal's evidence: audit event, limiter count.
        status = 429 if isinstance(refusal, errors.RateLimited) else 401
        return _sign_in_form(request, security, status_code=status, error=refusal.detail)
    claims = security.tokens.verify(pair.access_token)
    if claims.role not in STAFF_ROLES:
        principal = Principal(claims.user_id, claims.role, claims.session_id)
        await sessions.logout(tx, security, principal, pair.refresh_token)
        return _sign_in_form(
            request, security, status_code=403,
            error="The console is for staff. Customers use the shop.",
        )  # fmt: skip
    response = RedirectResponse(_safe_next(form.get("next")), status_code=303)
    response.set_cookie(
        session.COOKIE,
        session.issue(
            security.settings, user_id=claims.user_id, role=claims.role,
            session_id=claims.session_id,
        ),
        path=session.COOKIE_PATH, httponly=True, samesite="strict",
        secure=request.url.scheme == "https", max_age=int(session.SESSION_TTL.total_seconds()),
    )  # fmt: skip
    response.delete_cookie(session.SIGNIN_COOKIE, path=session.COOKIE_PATH)
    return response


@router.post("/sign-out")
async def sign_out(
    tx: Transaction, security: SecurityRuntime, user: StaffSession, form: Form
) -> Response:
    """End the login session everywhere (its family is revoked) and forget the cookie."""
    await sessions.logout(tx, security, user, None)
    return clear_session(see_other(SIGN_IN, "signed-out"))


# ---------------------------------------------------------------- overview


@router.get("")
async def overview_redirect(user: StaffSession) -> Response:
    """``/console`` → ``/console/``."""
    return RedirectResponse(PREFIX + "/", status_code=308)


@router.get("/")
async def overview(
    request: Request, tx: Transaction, runtime: AppRuntime, user: StaffSession
) -> Response:
    """Dependencies' health, the job queue, open incidents and error budgets at a glance."""
    return render(request, "overview.html", **await pages.overview(request, tx, runtime))


@router.get("/overview/panel")
async def overview_panel(
    request: Request, tx: Transaction, runtime: AppRuntime, user: StaffSession
) -> Response:
    """The overview's figures alone (htmx refreshes them in place)."""
    return render(request, "_overview_panel.html", **await pages.overview(request, tx, runtime))


# ---------------------------------------------------------------- orders


@router.get("/orders")
async def orders(
    request: Request,
    tx: Transaction,
    user: StaffSession,
    page: Page,
    q: Annotated[str, Query(max_length=320)] = "",
    status: Annotated[str, Query(max_length=20)] = "",  # "" is the form's "any"
) -> Response:
    """Search orders by id, customer e-mail and status, newest first."""
    query = q.strip()
    chosen = OrderStatus(status) if status in OrderStatus.__members__ else None
    try:
        order_id = uuid.UUID(query)
    except ValueError:
        order_id = None
    if order_id is not None:
        return RedirectResponse(f"{PREFIX}/orders/{order_id}", status_code=303)
    customer_id = None
    if query:
        customer_id = await accounts_service.find_id_by_email(tx, query)
    found: list[OrderRead] = []
    last: tuple[datetime, uuid.UUID] | None = None
    if not query or customer_id is not None:
        found, last = await orders_service.list_orders(
            tx, viewer_id=user.id, sees_all=True, status=chosen, limit=page.limit,
            after=keyset_after(page.cursor), customer_id=customer_id,
        )  # fmt: skip
    return render(
        request, "orders.html", orders=found, q=query, status=chosen, statuses=list(OrderStatus),
        next_cursor=next_cursor(last), no_account=bool(query) and customer_id is None,
    )  # fmt: skip


@router.get("/orders/{order_id}")
async def order_detail(
    request: Request, order_id: uuid.UUID, tx: Transaction, security: SecurityRuntime,
    user: StaffSession,
) -> Response:  # fmt: skip
    """One order: lines, customer, shipping address and its status history."""
    return render(request, "order.html", **await pages.order(tx, security, user, order_id))


_ORDER_ACTIONS = {"cancel": "cancelled", "refund": "refunded"}


@router.get("/orders/{order_id}/{action}")
async def order_confirm(
    request: Request, order_id: uuid.UUID, action: str, tx: Transaction,
    security: SecurityRuntime, user: StaffSession,
) -> Response:  # fmt: skip
    """The confirmation step before a cancel or refund."""
    if action not in _ORDER_ACTIONS:
        raise errors.NotFound("No such page.")
    context = await pages.order(tx, security, user, order_id)
    return render(request, "order_confirm.html", action=action, **context)


@router.post("/orders/{order_id}/{action}")
async def order_action(
    order_id: uuid.UUID, action: str, tx: Transaction, runtime: AppRuntime,
    user: StaffSession, origin: Origin, form: Form,
) -> Response:  # fmt: skip
    """Cancel (stock back, refund if paid) or refund the order; audited."""
    if action == "cancel":
        await order_actions.cancel_order(
            tx, runtime.stripe, order_id, context=acting(origin, user), sees_all=True
        )
    elif action == "refund":
        await order_actions.refund_order(tx, runtime.stripe, order_id, context=acting(origin, user))
    else:
        raise errors.NotFound("No such action.")
    return see_other(f"{PREFIX}/orders/{order_id}", _ORDER_ACTIONS[action])


# ---------------------------------------------------------------- jobs (admin)


@router.get("/jobs")
async def jobs(
    request: Request, tx: Transaction, user: AdminSession, status: JobStatus | None = None
) -> Response:
    """Unfinished jobs by status; a dead job shows its last error and can be retried."""
    records = await jobs_service.list_jobs(tx, status=status, limit=100)
    stats = await jobs_service.queue_summary(tx)
    return render(
        request, "jobs.html", jobs=records, status=status, statuses=list(JobStatus), stats=stats
    )


@router.post("/jobs/{job_id}/retry")
async def retry_job(
    request: Request, job_id: int, tx: Transaction, user: AdminSession, origin: Origin, form: Form
) -> Response:
    """Re-queue a dead job (audited); htmx swaps its row, a plain post comes back to the list."""
    record = await jobs_service.retry_dead_job(tx, job_id, context=acting(origin, user))
    if request.headers.get("hx-request"):
        return render(request, "_job_row.html", job=record, just_retried=True)
    back = form.get("back_status", "")
    return see_other(
        f"{PREFIX}/jobs"
        + (f"?status={back}&done=retried" if back in JobStatus.__members__ else "?done=retried")
    )


# ---------------------------------------------------------------- flags (admin)


@router.get("/flags")
async def flags(request: Request, tx: Transaction, user: AdminSession) -> Response:
    """Every flag: on or off, rollout, release plan status."""
    return render(request, "flags.html", flags=await pages.flag_rows(tx))


@router.get("/flags/{name}")
async def flag_detail(request: Request, name: str, tx: Transaction, user: AdminSession) -> Response:
    """One flag: kill switch, rollout slider, release plan progress and history."""
    return render(request, "flag.html", **await pages.flag(tx, name))


@router.post("/flags/{name}/rollout")
async def flag_rollout(
    name: str, tx: Transaction, user: AdminSession, origin: Origin, form: Form
) -> Response:
    """Set the flag's gradual rollout (0–100 %); audited before/after."""
    try:
        rollout = int(form.get("rollout", ""))
    except ValueError:
        raise errors.InvalidInput("rollout must be a whole number", field="rollout") from None
    if not 0 <= rollout <= 100:
        raise errors.InvalidInput("rollout must be between 0 and 100", field="rollout")
    await flags_service.set_rollout(
        tx, acting(origin, user), name, rollout, action="flag.rollout_changed"
    )
    return see_other(f"{PREFIX}/flags/{name}", "rollout")


@router.post("/flags/{name}/switch")
async def flag_switch(
    name: str, tx: Transaction, user: AdminSession, origin: Origin, form: Form
) -> Response:
    """The kill switch: off everywhere at once (or back on)."""
    enabled = form.get("enabled") == "true"
    await flags_service.set_enabled(tx, acting(origin, user), name, enabled=enabled)
    return see_other(f"{PREFIX}/flags/{name}", "enabled" if enabled else "killed")


_RELEASE_STEPS = {"pause": release.pause, "resume": release.resume, "rollback": release.rollback}


@router.post("/flags/{name}/release/{step}")
async def flag_release(
    name: str, step: str, tx: Transaction, user: AdminSession, origin: Origin, form: Form
) -> Response:
    """Pause, resume or roll back the flag's release plan."""
    change = _RELEASE_STEPS.get(step)
    if change is None:
        raise errors.NotFound("No such step.")
    await change(tx, acting(origin, user), name)
    return see_other(f"{PREFIX}/flags/{name}", "release")


# ---------------------------------------------------------------- incidents


@router.get("/incidents")
async def incidents(
    request: Request, tx: Transaction, user: StaffSession, status: IncidentStatus | None = None
) -> Response:
    """Incidents newest first, and the form to open one."""
    found = await incidents_service.list_incidents(tx, status=status, limit=100, before=None)
    return render(
        request, "incidents.html", incidents=found, status=status,
        statuses=list(IncidentStatus), severities=list(Severity),
    )  # fmt: skip


@router.post("/incidents")
async def open_incident(
    tx: Transaction, user: StaffSession, origin: Origin, form: Form
) -> Response:
    """Open an incident (the signed-in user commands it)."""
    try:
        data = IncidentCreate(
            title=form.get("title", ""), severity=form.get("severity", ""),
            summary=form.get("summary") or None,
        )  # fmt: skip
    except ValidationError as invalid:
        raise errors.InvalidInput(pages.describe(invalid)) from None
    incident = await incidents_service.create(tx, acting(origin, user), data)
    return see_other(f"{PREFIX}/incidents/{incident.id}", "opened")


@router.get("/incidents/{incident_id}")
async def incident_detail(
    request: Request, incident_id: uuid.UUID, tx: Transaction, user: StaffSession
) -> Response:
    """One incident: timeline, note and status forms, the post-mortem draft."""
    incident = await incidents_service.get(tx, incident_id)
    draft = await postmortem.render(tx, incident)
    return render(
        request, "incident.html", incident=incident, postmortem=draft,
        next_statuses=pages.next_incident_statuses(incident.status),
    )  # fmt: skip


@router.get("/incidents/{incident_id}/postmortem.md")
async def incident_postmortem(
    incident_id: uuid.UUID, tx: Transaction, user: StaffSession
) -> Response:
    """The post-mortem draft as a Markdown file."""
    incident = await incidents_service.get(tx, incident_id)
    body = await postmortem.render(tx, incident)
    filename = f"postmortem-{incident.started_at:%Y-%m-%d}-{str(incident.id)[:8]}.md"
    return Response(
        body, media_type="text/markdown; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )  # fmt: skip


@router.post("/incidents/{incident_id}/notes")
async def incident_note(
    incident_id: uuid.UUID, tx: Transaction, user: StaffSession, origin: Origin, form: Form
) -> Response:
    """Add a note to the timeline."""
    message = form.get("message", "").strip()
    if not 1 <= len(message) <= 5000:
        raise errors.InvalidInput("A note needs 1 to 5000 characters.", field="message")
    await incidents_service.add_note(tx, acting(origin, user), incident_id, message)
    return see_other(f"{PREFIX}/incidents/{incident_id}", "noted")


@router.post("/incidents/{incident_id}/status")
async def incident_status(
    incident_id: uuid.UUID, tx: Transaction, user: StaffSession, origin: Origin, form: Form
) -> Response:
    """Move the incident on: active → stable → closed."""
    try:
        change = IncidentUpdate(status=form.get("status", ""))
    except ValidationError as invalid:
        raise errors.InvalidInput(pages.describe(invalid)) from None
    await incidents_service.update(tx, acting(origin, user), incident_id, change)
    return see_other(f"{PREFIX}/incidents/{incident_id}", "status")


# ---------------------------------------------------------------- SLOs, analytics, audit


@router.get("/slos")
async def slos(
    request: Request, tx: Transaction, user: StaffSession,
    hours: Annotated[int, Query(ge=1, le=48)] = 6,
) -> Response:  # fmt: skip
    """Error budgets, burn rates, and request rate, error rate and latency over the last hours."""
    report = await slo.report(tx)
    bin_minutes = pages.bin_minutes(hours)
    points = await slo.traffic(tx, hours=hours, bin_minutes=bin_minutes)
    return render(
        request, "slos.html", report=report, hours=hours, bin_minutes=bin_minutes,
        charts=pages.traffic_charts(points, hours),
    )  # fmt: skip


@router.get("/analytics")
async def analytics(
    request: Request,
    tx: Transaction,
    runtime: AppRuntime,
    user: StaffSession,
    first: Annotated[date | None, Query(alias="from")] = None,
    last: Annotated[date | None, Query(alias="to")] = None,
) -> Response:
    """Revenue by day and the best products, from the pre-computed summary."""
    currency = runtime.settings.currency
    summary = await analytics_service.summary(tx, currency=currency, first=first, last=last)
    return render(request, "analytics.html", summary=summary, chart=pages.revenue_chart(summary))


@router.get("/audit")
async def audit(
    request: Request,
    tx: Transaction,
    user: AdminSession,
    action: Annotated[str, Query(max_length=100)] = "",
    actor_id: Annotated[str, Query(max_length=36)] = "",
    target_id: Annotated[str, Query(max_length=100)] = "",
    before: int | None = None,
) -> Response:
    """The audit log, filtered, with the hash chain's status."""
    try:
        actor = uuid.UUID(actor_id) if actor_id.strip() else None
    except ValueError:
        raise errors.InvalidInput("actor must be a user id", field="actor_id") from None
    events = await audit_service.list_events(
        tx, limit=51, before_seq=before, action=action.strip() or None, actor_id=actor,
        target_id=target_id.strip() or None,
    )  # fmt: skip
    chain = await audit_service.verify_chain(tx)
    return render(
        request, "audit.html", events=events[:50], more=len(events) > 50, chain=chain,
        action=action, actor_id=actor_id, target_id=target_id,
    )  # fmt: skip


__all__ = ["mount_console", "router"]
