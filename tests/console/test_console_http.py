"""The console over ASGI: cookie flags, CSRF, roles, CSP, sign-out (no browser needed)."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from orderly.accounts.schemas import Role
from orderly.accounts.tokens import decode_access_token
from orderly.api.auth import app_routes, unguarded_routes
from orderly.config import Settings
from orderly.console import session
from orderly.console.charts import nice_max
from orderly.core.db import Database
from orderly.incidents.slo import quantile
from tests.console.conftest import console_sign_in, csrf_of
from tests.support.accounts import create_user, login, unique_email

PAGES = ["/", "/orders", "/incidents", "/slos", "/analytics"]
ADMIN_PAGES = ["/jobs", "/flags", "/audit"]


async def _user(database: Database, settings: Settings, role: Role) -> str:
    email = unique_email(role.value)
    await create_user(database, settings, role, email=email)
    return email


@pytest.fixture
async def https_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client that reaches the app over TLS (scheme https)."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        yield c


async def test_sign_in_form_is_labelled_and_served_under_a_strict_csp(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/console/sign-in")
    assert page.status_code == 200
    assert '<label for="email">Email</label>' in page.text
    assert '<label for="password">Password</label>' in page.text
    assert '<button type="submit">Sign in</button>' in page.text
    assert "<title>Sign in" in page.text
    csp = page.headers["content-security-policy"]
    for directive in (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ):
        assert directive in csp
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp
    # No inline script or style anywhere: every script comes from /console/static.
    assert not re.search(r"<script(?![^>]*\bsrc=)", page.text)
    assert "<style" not in page.text
    assert " style=" not in page.text
    assert (await client.get("/console/static/htmx.min.js")).status_code == 200
    assert (await client.get("/console/static/htmx.LICENSE.txt")).status_code == 200
    assert (await client.get("/console/static/../endpoints.py")).status_code == 404


async def test_staff_session_cookie_is_httponly_strict_and_scoped(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    email = await _user(database, settings, Role.staff)
    response = await console_sign_in(client, email)
    assert response.status_code == 303
    assert response.headers["location"] == "/console/"
    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith(session.COOKIE + "=")
    )
    attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert "httponly" in attributes
    assert "samesite=strict" in attributes
    assert "path=/console" in attributes
    assert "secure" not in attributes  # plain HTTP here; see the TLS test below
    overview = await client.get("/console/")
    assert overview.status_code == 200
    assert overview.headers["cache-control"] == "no-store"
    assert "<h1>Overview</h1>" in overview.text


async def test_over_tls_the_cookie_is_secure(
    https_client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    email = await _user(database, settings, Role.admin)
    response = await console_sign_in(https_client, email)
    assert response.status_code == 303
    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith(session.COOKIE + "=")
    )
    assert "secure" in {part.strip().lower() for part in cookie.split(";")[1:]}
    assert response.headers["strict-transport-security"]


async def test_wrong_password_is_refused_with_one_message_and_audited(
    client: httpx.AsyncClient, database: Database, settings: Settings, raw_db: object
) -> None:
    email = await _user(database, settings, Role.staff)
    response = await console_sign_in(client, email, "not the password at all")
    assert response.status_code == 401
    assert "Invalid e-mail or password." in response.text
    assert session.COOKIE + "=" not in response.headers.get("set-cookie", "")
    async with database.transaction() as tx:
        count = await tx.fetchval(
            "SELECT count(*) FROM audit_event WHERE action = 'auth.login_failed'"
        )
    assert count == 1


async def test_a_customer_is_refused_and_their_login_session_revoked(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    email = await _user(database, settings, Role.customer)
    response = await console_sign_in(client, email)
    assert response.status_code == 403
    assert "The console is for staff" in response.text
    assert session.COOKIE + "=" not in response.headers.get("set-cookie", "")
    async with database.transaction() as tx:
        open_sessions = await tx.fetchval(
            "SELECT count(*) FROM refresh_family f JOIN user_account u ON u.id = f.user_id"
            " WHERE u.email = $1 AND f.revoked_at IS NULL",
            email,
        )
    assert open_sessions == 0
    # Even holding a validly signed cookie for a live login session, a customer gets 403.
    claims = decode_access_token(settings, (await login(client, email))["access_token"])
    cookie = session.issue(
        settings, user_id=claims.user_id, role=Role.admin, session_id=claims.session_id
    )  # the role in the cookie is not trusted: the database says customer
    client.cookies.set(session.COOKIE, cookie)
    for path in PAGES + ADMIN_PAGES:
        assert (await client.get("/console" + path)).status_code == 403, path


async def test_without_a_session_pages_send_the_browser_to_sign_in(
    client: httpx.AsyncClient,
) -> None:
    for path in PAGES + ADMIN_PAGES:
        response = await client.get("/console" + path)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/console/sign-in?next=/console")
    client.cookies.set(session.COOKIE, "x.y.z")
    assert (await client.get("/console/")).status_code == 303


async def test_staff_see_staff_pages_admins_also_jobs_flags_audit(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    staff = await _user(database, settings, Role.staff)
    assert (await console_sign_in(client, staff)).status_code == 303
    overview = await client.get("/console/")
    for label in ("Overview", "Orders", "Incidents", "SLOs", "Analytics"):
        assert f">{label}</a>" in overview.text
    for label in ("Jobs", "Flags", "Audit"):
        assert f">{label}</a>" not in overview.text  # hidden from staff…
    for path in PAGES:
        assert (await client.get("/console" + path)).status_code == 200, path
    for path in ADMIN_PAGES:
        assert (await client.get("/console" + path)).status_code == 403, path  # …and refused
    token = csrf_of(overview.text)
    refused = await client.post("/console/jobs/1/retry", data={"csrf_token": token})
    assert refused.status_code == 403

    client.cookies.clear()
    admin = await _user(database, settings, Role.admin)
    assert (await console_sign_in(client, admin)).status_code == 303
    for path in PAGES + ADMIN_PAGES:
        page = await client.get("/console" + path)
        assert page.status_code == 200, path
    assert ">Audit</a>" in page.text


async def test_every_console_form_needs_its_csrf_token(
    app: FastAPI, client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    admin = await _user(database, settings, Role.admin)
    assert (await console_sign_in(client, admin)).status_code == 303
    page = await client.get("/console/incidents")
    token = csrf_of(page.text)
    posts = [
        r.path for r in app_routes(app) if r.path.startswith("/console") and "POST" in r.methods
    ]
    assert len(posts) >= 8
    for path in posts:
        concrete = re.sub(r"\{[^}]+\}", "1", path).replace(
            "/incidents/1", f"/incidents/{uuid.uuid4()}"
        )
        concrete = concrete.replace("/orders/1", f"/orders/{uuid.uuid4()}")
        for data in ({}, {"csrf_token": "0" * 64}):
            response = await client.post(concrete, data=data)
            assert response.status_code == 403, (path, data, response.status_code)
    # With the token the same kind of form works; from another origin it does not.
    opened = await client.post(
        "/console/incidents", data={"csrf_token": token, "title": "Disk full", "severity": "SEV2"}
    )
    assert opened.status_code == 303
    cross = await client.post(
        "/console/incidents",
        data={"csrf_token": token, "title": "x", "severity": "SEV2"},
        headers={"Origin": "https://evil.example"},
    )
    assert cross.status_code == 403
    # The sign-in form has its own token, bound to its pre-session cookie.
    client.cookies.clear()
    bare = await client.post("/console/sign-in", data={"email": admin, "password": "x" * 12})
    assert bare.status_code == 403


async def test_sign_out_revokes_the_session_for_a_copied_cookie_too(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    email = await _user(database, settings, Role.staff)
    assert (await console_sign_in(client, email)).status_code == 303
    copied = client.cookies.get(session.COOKIE)
    assert copied
    client.cookies.clear()
    client.cookies.set(session.COOKIE, copied)  # the copy works while the session lives
    overview = await client.get("/console/")
    assert overview.status_code == 200
    out = await client.post("/console/sign-out", data={"csrf_token": csrf_of(overview.text)})
    assert out.status_code == 303
    assert out.headers["location"] == "/console/sign-in?done=signed-out"
    client.cookies.set(session.COOKIE, copied)
    replay = await client.get("/console/")
    assert replay.status_code == 303
    assert replay.headers["location"].startswith("/console/sign-in")


def test_console_routes_declare_their_policies(app: FastAPI) -> None:
    assert unguarded_routes(app) == []
    console = {r.path: r.policy for r in app_routes(app) if r.path.startswith("/console")}
    sign_in = console["/console/sign-in"]
    assert sign_in is not None
    assert sign_in.public
    jobs = console["/console/jobs"]
    assert jobs is not None
    assert jobs.roles == {Role.admin}
    orders = console["/console/orders"]
    assert orders is not None
    assert orders.roles == {Role.staff, Role.admin}


def test_latency_quantiles_and_chart_scales() -> None:
    assert quantile({}, 0.5) is None
    # 100 requests in the 10–25 ms bucket: the median is interpolated inside it.
    assert quantile({2: 100}, 0.5) == pytest.approx(0.0175)
    assert quantile({0: 98, 11: 2}, 0.99) == 10.0
    assert [nice_max(v) for v in (0, 0.3, 7, 12, 99)] == [1.0, 0.5, 10.0, 20.0, 100.0]
