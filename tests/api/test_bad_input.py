"""Bad input is a 4xx, never a 500: NUL characters, huge integers, coerced types, bad headers."""

from __future__ import annotations

import base64
import uuid

import asyncpg
import httpx
import orjson
import pytest

from orderly.accounts.schemas import Role
from orderly.config import Settings
from orderly.core.db import Database
from tests.support.accounts import PASSWORD, SignedInUser, create_user, signed_in, unique_email
from tests.support.shop import ADDRESS, create_product, order_body

PROBLEM = "application/problem+json"
BEYOND_BIGINT = "9223372036854775808"


def assert_problem(response: httpx.Response, status: int, field: str | None = None) -> None:
    """*status* as problem+json; for 422, *field* is among the errors."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    if field is not None:
        assert field in {error["field"] for error in response.json()["errors"]}, response.text


def cursor(values: dict[str, str]) -> str:
    """A cursor as the API encodes it."""
    return base64.urlsafe_b64encode(orjson.dumps(values)).decode().rstrip("=")


@pytest.fixture
async def staff(client: httpx.AsyncClient, database: Database, settings: Settings) -> SignedInUser:
    return await signed_in(client, database, settings, Role.staff)


@pytest.fixture
async def admin(client: httpx.AsyncClient, database: Database, settings: Settings) -> SignedInUser:
    return await signed_in(client, database, settings, Role.admin)


@pytest.fixture
async def customer(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> SignedInUser:
    return await signed_in(client, database, settings, Role.customer)


# ---------------------------------------------------------------- NUL characters


async def test_a_nul_in_any_body_string_is_422_with_its_field(
    client: httpx.AsyncClient, staff: SignedInUser, customer: SignedInUser, admin: SignedInUser
) -> None:
    product = await create_product(client, staff.headers, stock=5)
    cases = [
        ("/v1/auth/register", {"email": unique_email(), "password": "x" * 12, "name": "A\x00"},
         {}, "name"),
        ("/v1/products", {"sku": "NUL-1", "name": "Cog\x00", "price_cents": 1, "currency": "USD",
                          "stock": 1}, staff.headers, "name"),
        ("/v1/orders", {**order_body((product["id"], 1)),
                        "shipping_address": {**ADDRESS, "city": "Lon\x00don"}},
         customer.headers, "shipping_address.city"),
        ("/v1/admin/flags/import", {"features": [{"name": "a", "description": "\x00"}]},
         admin.headers, "features.0.description"),
        ("/v1/admin/flags/evaluate", {"flag": "a", "context": {"properties": {"k\x00": "v"}}},
         admin.headers, "context.properties.k\x00"),
    ]  # fmt: skip
    for path, body, headers, field in cases:
        response = await client.post(path, json=body, headers=headers)
        assert_problem(response, 422, field)
    patch = await client.patch(
        f"/v1/products/{product['id']}", json={"description": "\x00"}, headers=staff.headers
    )
    assert_problem(patch, 422, "description")


async def test_a_nul_in_a_query_or_path_is_422(
    client: httpx.AsyncClient, admin: SignedInUser
) -> None:
    audit = await client.get("/v1/admin/audit-events?action=a%00b", headers=admin.headers)
    assert_problem(audit, 422, "action")
    flag = await client.get("/v1/admin/flags/a%00b", headers=admin.headers)
    assert_problem(flag, 422)
    listed = await client.get(
        "/v1/admin/flags", params={"cursor": cursor({"n": "a\x00"})}, headers=admin.headers
    )
    assert_problem(listed, 422, "cursor")


async def test_a_login_with_a_nul_is_422_audited_and_counted(
    client: httpx.AsyncClient,
    database: Database,
    settings: Settings,
    raw_db: asyncpg.Connection,
) -> None:
    assert settings.login_rate_limit == "10/15minutes"
    email = unique_email()
    await create_user(database, settings, email=email)
    statuses = []
    for _ in range(10):
        response = await client.post(
            "/v1/auth/token", json={"email": email, "password": PASSWORD + "\x00"}
        )
        statuses.append(response.status_code)
    assert statuses == [422] * 9 + [429]
    # The tenth failure used up this client's allowance on the account: the right password waits.
    locked = await client.post("/v1/auth/token", json={"email": email, "password": PASSWORD})
    assert_problem(locked, 429)
    reasons = await raw_db.fetch(
        "SELECT details->>'reason' AS reason FROM audit_event WHERE action = 'auth.login_failed'"
    )
    assert [row["reason"] for row in reasons] == ["malformed"] * 10
    in_email = await client.post(
        "/v1/auth/token", json={"email": unique_email() + "\x00", "password": "whatever-1234"}
    )
    assert_problem(in_email, 422, "email")


# ---------------------------------------------------------------- integers beyond 64 bits


async def test_integers_beyond_64_bits_in_paths_and_cursors_are_4xx(
    client: httpx.AsyncClient, admin: SignedInUser, customer: SignedInUser
) -> None:
    retry = await client.post(f"/v1/admin/jobs/{BEYOND_BIGINT}/retry", headers=admin.headers)
    assert retry.status_code in (404, 422), retry.text
    assert retry.headers["content-type"] == PROBLEM
    huge = "1" * 23
    for path, key, headers in (
        ("/v1/admin/jobs", "id", admin.headers),
        ("/v1/admin/audit-events", "seq", admin.headers),
        ("/v1/wallet/transactions", "e", customer.headers),
    ):
        response = await client.get(path, params={"cursor": cursor({key: huge})}, headers=headers)
        assert_problem(response, 422, "cursor")
    garbage = await client.get("/v1/products", params={"cursor": "not a cursor!"})
    assert_problem(garbage, 422, "cursor")


# ---------------------------------------------------------------- strict types


async def test_bodies_are_not_coerced(
    client: httpx.AsyncClient, staff: SignedInUser, customer: SignedInUser
) -> None:
    product = await create_product(client, staff.headers, stock=5)
    for quantity in ("1", True, 1.0):
        body = order_body((product["id"], 1))
        body["items"][0]["quantity"] = quantity
        response = await client.post("/v1/orders", json=body, headers=customer.headers)
        assert_problem(response, 422, "items.0.quantity")
    url = f"/v1/products/{product['id']}"
    for body, field in (({"active": 0}, "active"), ({"price_cents": "5"}, "price_cents"),
                        ({"name": None}, "name"), ({"active": None}, "active")):  # fmt: skip
        assert_problem(await client.patch(url, json=body, headers=staff.headers), 422, field)
    # JSON's own spellings still parse: a UUID string, and the omitted fields stay as they are.
    ok = await client.post(
        "/v1/orders", json=order_body((product["id"], 1)), headers=customer.headers
    )
    assert ok.status_code == 201, ok.text
    renamed = await client.patch(url, json={"name": "Sprocket"}, headers=staff.headers)
    assert renamed.status_code == 200
    assert renamed.json()["active"] is True
    zero = await client.post(
        f"{url}/stock-adjustments", json={"delta": 0, "reason": "count"}, headers=staff.headers
    )
    assert_problem(zero, 422, "delta")


async def test_passwords_are_taken_byte_for_byte(client: httpx.AsyncClient) -> None:
    email, password = unique_email(), "  spaced passphrase 2026  "
    registered = await client.post(
        "/v1/auth/register", json={"email": email, "password": password, "name": "Ada"}
    )
    assert registered.status_code == 201, registered.text
    stripped = await client.post(
        "/v1/auth/token", json={"email": email, "password": password.strip()}
    )
    assert stripped.status_code == 401
    exact = await client.post("/v1/auth/token", json={"email": email, "password": password})
    assert exact.status_code == 200


# ---------------------------------------------------------------- headers


async def test_a_malformed_idempotency_key_is_a_problem_400(
    client: httpx.AsyncClient, staff: SignedInUser
) -> None:
    body = {"sku": f"K-{uuid.uuid4().hex[:8]}", "name": "Key", "price_cents": 1,
            "currency": "USD", "stock": 1}  # fmt: skip
    for key in ("tab\there", "del\x7f", "é-accent", "x" * 256, ""):
        headers: dict[str, str | bytes] = {
            **staff.headers,
            "Idempotency-Key": key.encode("latin-1"),
        }
        response = await client.post("/v1/products", json=body, headers=headers)
        assert_problem(response, 400)
        assert response.json()["code"] == "bad_request"
    accepted = await client.post(
        "/v1/products", json=body, headers={**staff.headers, "Idempotency-Key": "k" * 255}
    )
    assert accepted.status_code == 201


async def test_tokens_are_never_cached(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    email = unique_email()
    await create_user(database, settings, email=email)
    token = await client.post("/v1/auth/token", json={"email": email, "password": PASSWORD})
    assert token.status_code == 200
    assert token.headers["cache-control"] == "no-store"
    refreshed = await client.post(
        "/v1/auth/refresh", json={"refresh_token": token.json()["refresh_token"]}
    )
    assert refreshed.status_code == 200
    assert refreshed.headers["cache-control"] == "no-store"


async def test_the_routes_left_out_of_the_fuzz_run_refuse_bad_input(
    client: httpx.AsyncClient, admin: SignedInUser, customer: SignedInUser
) -> None:
    """Logout and role changes are fuzzed by hand (the fuzzer would end its own session)."""
    url = f"/v1/users/{customer.id}/role"
    for body, field in (({"role": 1}, "role"), ({"role": "admin", "extra": 1}, "extra"),
                        ({"role": "admin\x00"}, "role")):  # fmt: skip
        assert_problem(await client.patch(url, json=body, headers=admin.headers), 422, field)
    big = await client.patch(
        f"/v1/users/{BEYOND_BIGINT}/role", json={"role": "staff"}, headers=admin.headers
    )
    assert_problem(big, 422, "user_id")
    logout = await client.post(
        "/v1/auth/logout", json={"refresh_token": "a\x00"}, headers=customer.headers
    )
    assert_problem(logout, 422, "refresh_token")
    still_signed_in = await client.get("/v1/users/me", headers=customer.headers)
    assert still_signed_in.status_code == 200
