"""The console in a real browser: Debian's chromium, driven by Playwright, against `orderly api`.

The server is a real ``orderly api`` process on a free loopback port and the
test database; data is made through its HTTP API (and the job queue) as an
operator's would be. Each page is saved as a screenshot in
``ORDERLY_SCREENSHOT_DIR`` (default: pytest's temporary directory; never
committed) so a person can look at what the test saw.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from orderly.accounts.schemas import Role
from orderly.config import Settings
from orderly.core.db import Database
from orderly.core.jobs import enqueue
from tests.conftest import make_settings
from tests.support.accounts import CHEAP_HASHING, PASSWORD, create_user, unique_email
from tests.test_serve import free_port, wait_ready

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
NAV = ["Overview", "Orders", "Jobs", "Flags", "Incidents", "SLOs", "Analytics", "Audit"]

if not Path(CHROMIUM).exists():  # pragma: no cover - .ci/run installs it
    if os.environ.get("CI"):
        raise RuntimeError("Debian's chromium is missing in CI: .ci/run installs it")
    pytest.skip(
        "Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True
    )


@dataclass
class Server:
    """A running `orderly api` and the settings it shares with the test."""

    base: str
    settings: Settings


@pytest.fixture(scope="module")
def server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`orderly api` on a free loopback port, on the test database."""
    data_dir = tmp_path_factory.mktemp("console-server")
    jwt_secret, keys = secrets.token_urlsafe(48), secrets.token_urlsafe(32)
    settings = make_settings(
        database_url, data_dir, jwt_secret=jwt_secret, encryption_keys=keys, **CHEAP_HASHING
    )
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERLY_")}
    env.update(
        ORDERLY_DATABASE_URL=database_url,
        ORDERLY_DATA_DIR=str(data_dir),
        ORDERLY_PORT=str(port),
        ORDERLY_JWT_SECRET=jwt_secret,
        ORDERLY_ENCRYPTION_KEYS=keys,
        ORDERLY_LOG_LEVEL="WARNING",
        ORDERLY_TELEMETRY_FLUSH_SECONDS="1",
        ORDERLY_PASSWORD_HASH_TIME_COST=str(CHEAP_HASHING["password_hash_time_cost"]),
        ORDERLY_PASSWORD_HASH_MEMORY_KIB=str(CHEAP_HASHING["password_hash_memory_kib"]),
    )
    log = (data_dir / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "orderly", "api"],
        cwd=data_dir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc)
        yield Server(base, settings)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: ORDERLY_SCREENSHOT_DIR, else a pytest temporary directory."""
    chosen = os.environ.get("ORDERLY_SCREENSHOT_DIR")
    path = Path(chosen) if chosen else tmp_path_factory.mktemp("console-screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    """Debian's chromium, headless, with no network but loopback."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@dataclass
class Shop:
    """What the seed made: people and the ids the test looks for."""

    admin: str
    staff: str
    customer: str
    customer_token: str
    order_id: str
    dead_job_id: int


async def _token(http: httpx.AsyncClient, email: str) -> dict[str, str]:
    response = await http.post("/v1/auth/token", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def _seed(server: Server, database: Database) -> Shop:
    """People, a product, a paid and a pending order, a flag, a dead job, fresh analytics."""
    emails = {role: unique_email(role.value) for role in Role}
    for role, email in emails.items():
        await create_user(database, server.settings, role, email=email)
    async with httpx.AsyncClient(base_url=server.base, timeout=30) as http:
        admin = await _token(http, emails[Role.admin])
        staff = await _token(http, emails[Role.staff])
        customer = await _token(http, emails[Role.customer])
        product = await http.post(
            "/v1/products",
            headers=staff,
            json={"sku": f"TEA-{secrets.token_hex(3)}", "name": "Sencha tea", "price_cents": 1250,
                  "currency": "USD", "stock": 50},
        )  # fmt: skip
        assert product.status_code == 201, product.text
        customer_id = (await http.get("/v1/users/me", headers=customer)).json()["id"]
        grant = await http.post(
            "/v1/admin/credits",
            headers=admin,
            json={"user_id": customer_id, "amount_cents": 10_000, "transaction_id": "seed-1",
                  "reason": "console test"},
        )  # fmt: skip
        assert grant.status_code == 201, grant.text
        body = {
            "items": [{"product_id": product.json()["id"], "quantity": 2}],
            "shipping_address": {"name": "Ada Lovelace", "line1": "12 St James's Square",
                                 "city": "London", "postal_code": "SW1Y 4JH", "country": "GB"},
        }  # fmt: skip
        paid = await http.post("/v1/orders", headers=customer, json=body)
        assert paid.status_code == 201, paid.text
        pay = await http.post(
            f"/v1/orders/{paid.json()['id']}/pay", headers=customer, json={"method": "credits"}
        )
        assert pay.status_code == 200, pay.text
        pending = await http.post("/v1/orders", headers=customer, json=body)
        assert pending.status_code == 201, pending.text
        flag = await http.put(
            "/v1/admin/flags/checkout.new_flow",
            headers=admin,
            json={"name": "checkout.new_flow", "description": "The one-page checkout",
                  "enabled": True, "strategies": [{"name": "flexibleRollout", "parameters": {
                      "rollout": "0", "stickiness": "default", "groupId": "checkout.new_flow"}}]},
        )  # fmt: skip
        assert flag.status_code in (200, 201), flag.text
        for _ in range(5):  # some traffic for the SLO charts
            await http.get("/v1/products", headers=customer)
        refreshed = await http.post("/v1/admin/analytics/refresh", headers=admin)
        assert refreshed.status_code == 200, refreshed.text
    async with database.transaction() as tx:
        job_id = await enqueue(tx, "orders.notify_warehouse", {"order_id": paid.json()["id"]})
        await tx.commit()
    async with database.transaction() as tx:  # it failed every attempt: dead
        await tx.execute(
            "UPDATE pgqueuer SET status = 'failed', attempts = 8 WHERE id = $1", job_id
        )
        await tx.execute(
            """INSERT INTO pgqueuer_log (job_id, status, priority, entrypoint, traceback)
               VALUES ($1, 'failed', 0, 'orders.notify_warehouse', $2)""",
            job_id,
            {"exception_message": "warehouse answered 503 Service Unavailable"},
        )
        await tx.commit()
    return Shop(
        admin=emails[Role.admin],
        staff=emails[Role.staff],
        customer=emails[Role.customer],
        customer_token=customer["Authorization"],
        order_id=pending.json()["id"],
        dead_job_id=int(job_id),
    )


async def _sign_in(page: object, base: str, email: str) -> None:
    await page.goto(f"{base}/console/sign-in")  # type: ignore[attr-defined]
    await page.get_by_label("Email").fill(email)  # type: ignore[attr-defined]
    await page.get_by_label("Password").fill(PASSWORD)  # type: ignore[attr-defined]
    await page.get_by_role("button", name="Sign in").click()  # type: ignore[attr-defined]


async def test_an_admin_works_through_every_page(
    server: Server, database: Database, browser: object, shots: Path
) -> None:
    from playwright.async_api import expect

    shop = await _seed(server, database)
    context = await browser.new_context(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    page = await context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)

    await page.goto(f"{server.base}/console/")
    await expect(page).to_have_url(f"{server.base}/console/sign-in?next=/console/")
    await page.screenshot(path=str(shots / "00-sign-in.png"), full_page=True)
    await _sign_in(page, server.base, shop.admin)
    await expect(page.get_by_role("heading", level=1)).to_have_text("Overview")
    await expect(page).to_have_title("Overview · orderly console")
    nav = page.get_by_role("navigation", name="Console")
    for label in NAV:
        await expect(nav.get_by_role("link", name=label, exact=True)).to_be_visible()
    await expect(page.get_by_text("database")).to_be_visible()
    await page.screenshot(path=str(shots / "01-overview.png"), full_page=True)

    # Every page, reached by keyboard-focusable links, names itself and shows real data.
    expectations = {
        "Orders": shop.order_id,
        "Jobs": "orders.notify_warehouse",
        "Flags": "checkout.new_flow",
        "Incidents": "Open an incident",
        "SLOs": "availability",
        "Analytics": "Sencha tea",
        "Audit": "flag.created",
    }
    for index, (label, needle) in enumerate(expectations.items(), start=2):
        await nav.get_by_role("link", name=label, exact=True).focus()
        await page.keyboard.press("Enter")
        await expect(page.get_by_role("heading", level=1)).to_have_text(label)
        await expect(page).to_have_title(f"{label} · orderly console")
        await expect(page.get_by_text(needle).first).to_be_visible()
        await page.screenshot(path=str(shots / f"{index:02d}-{label.lower()}.png"), full_page=True)
    await expect(page.get_by_text("Hash chain: intact")).to_be_visible()

    # Orders: search by customer e-mail, open one, cancel it through the confirmation step.
    await nav.get_by_role("link", name="Orders", exact=True).click()
    await page.get_by_label("Order id or customer e-mail").fill(shop.customer)
    await page.get_by_role("button", name="Search").click()
    await page.get_by_role("link", name=shop.order_id).click()
    await expect(page.get_by_role("heading", name="Events")).to_be_visible()
    await page.screenshot(path=str(shots / "10-order.png"), full_page=True)
    await page.get_by_role("link", name="Cancel order…").click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text("Cancel order")
    await page.screenshot(path=str(shots / "11-order-cancel-confirm.png"), full_page=True)
    await page.get_by_role("button", name="Yes, cancel the order").click()
    await expect(page.locator("main > p.notice")).to_have_text("The order is cancelled.")
    await expect(page.get_by_text("cancelled").first).to_be_visible()

    # Jobs: the dead job shows its error and attempts; retry puts it back in the queue.
    await nav.get_by_role("link", name="Jobs", exact=True).click()
    await page.get_by_role("link", name="dead (1)").click()
    row = page.locator(f"#job-{shop.dead_job_id}")
    await expect(row).to_contain_text("warehouse answered 503 Service Unavailable")
    await expect(row).to_contain_text("8")
    await page.screenshot(path=str(shots / "12-jobs-dead.png"), full_page=True)
    await row.get_by_role("button", name=f"Retry job {shop.dead_job_id}").click()
    await expect(row).to_contain_text("queued again")
    await expect(row.locator(".badge")).to_have_text("queued")
    await page.get_by_role("link", name=re.compile(r"^queued \(\d+\)$")).click()
    await expect(page.locator(f"#job-{shop.dead_job_id} .badge")).to_have_text("queued")

    # Flags: move the rollout slider to 100 % and the customer's GET /v1/flags follows.
    async with httpx.AsyncClient(base_url=server.base) as http:
        before = await http.get("/v1/flags", headers={"Authorization": shop.customer_token})
        assert before.json()["flags"]["checkout.new_flow"]["enabled"] is False
        await nav.get_by_role("link", name="Flags", exact=True).click()
        await page.get_by_role("link", name="checkout.new_flow").click()
        slider = page.get_by_role("slider", name="Rollout")
        await expect(slider).to_have_attribute("type", "range")
        await slider.fill("100")
        await expect(page.locator("output#rollout-value")).to_have_text("100 %")
        await page.get_by_role("button", name="Set rollout").click()
        await expect(page.locator("main > p.notice")).to_have_text("The rollout is changed.")
        await expect(slider).to_have_value("100")
        await page.screenshot(path=str(shots / "13-flag.png"), full_page=True)
        deadline = time.monotonic() + 10
        while True:
            after = await http.get("/v1/flags", headers={"Authorization": shop.customer_token})
            if after.json()["flags"]["checkout.new_flow"]["enabled"]:
                break
            assert time.monotonic() < deadline, "the rollout never reached GET /v1/flags"
            await page.wait_for_timeout(200)

    # Incidents: open one, add a note, change status, download the post-mortem.
    await nav.get_by_role("link", name="Incidents", exact=True).click()
    await page.get_by_role("textbox", name="Title").fill("Checkout errors after rollout")
    await page.get_by_label("Severity").select_option("SEV2")
    await page.get_by_role("textbox", name="Summary").fill(
        "5xx on POST /v1/orders for the new flow."
    )
    await page.get_by_role("button", name="Open incident").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(
        "Incident: Checkout errors after rollout"
    )
    await page.get_by_role("textbox", name="Note").fill(
        "Rolled the flag back to 0 %; errors stopped."
    )
    await page.get_by_role("button", name="Add note").click()
    await expect(page.locator("main > p.notice")).to_have_text("The note is added to the timeline.")
    await page.get_by_label("New status").select_option("stable")
    await page.get_by_role("button", name="Change status").click()
    await expect(page.locator("ol.timeline")).to_contain_text("Rolled the flag back to 0 %")
    await expect(page.locator("ol.timeline")).to_contain_text("Status changed to stable")
    await page.screenshot(path=str(shots / "14-incident.png"), full_page=True)
    async with page.expect_download() as download_info:
        await page.get_by_role("link", name="Download post-mortem (Markdown)").click()
    download = await download_info.value
    assert download.suggested_filename.startswith("postmortem-")
    markdown = Path(await download.path()).read_text()
    assert "# Post-mortem: Checkout errors after rollout" in markdown
    assert "Rolled the flag back to 0 %" in markdown

    # A form posted without its CSRF token is refused, by the server, in the browser.
    await nav.get_by_role("link", name="Incidents", exact=True).click()
    await page.evaluate(
        'document.querySelector(\'form[action="/console/incidents"] '
        "input[name=csrf_token]').remove()"
    )
    await page.get_by_role("textbox", name="Title").fill("Should never open")
    await page.get_by_role("button", name="Open incident").click()
    await expect(page.get_by_role("alert")).to_contain_text("security token is missing")
    await page.screenshot(path=str(shots / "15-csrf-refused.png"), full_page=True)

    # Sign out: back at the sign-in form; the console is closed again.
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.locator("main > p.notice")).to_have_text("You are signed out.")
    await page.goto(f"{server.base}/console/orders")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    assert not [p for p in problems if "Content Security Policy" in p], problems
    await context.close()


async def test_a_customer_is_refused_and_staff_see_no_admin_pages(
    server: Server, database: Database, browser: object, shots: Path
) -> None:
    from playwright.async_api import expect

    customer, staff = unique_email("customer"), unique_email("staff")
    await create_user(database, server.settings, Role.customer, email=customer)
    await create_user(database, server.settings, Role.staff, email=staff)
    context = await browser.new_context()  # type: ignore[attr-defined]
    page = await context.new_page()
    await _sign_in(page, server.base, customer)
    await expect(page.get_by_role("alert")).to_have_text(
        "The console is for staff. Customers use the shop."
    )
    await page.screenshot(path=str(shots / "20-customer-refused.png"), full_page=True)
    response = await page.goto(f"{server.base}/console/")
    assert response is not None
    await expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")

    await _sign_in(page, server.base, staff)
    nav = page.get_by_role("navigation", name="Console")
    await expect(nav.get_by_role("link", name="Orders", exact=True)).to_be_visible()
    for hidden in ("Jobs", "Flags", "Audit"):
        await expect(nav.get_by_role("link", name=hidden, exact=True)).to_have_count(0)
    refused = await page.goto(f"{server.base}/console/jobs")
    assert refused is not None
    assert refused.status == 403
    await page.screenshot(path=str(shots / "21-staff-refused-jobs.png"), full_page=True)
    await context.close()
