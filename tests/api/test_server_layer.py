"""What the HTTP server in front of the app decides, through a real `orderly api`.

* ``X-Forwarded-For`` is believed only from ``ORDERLY_TRUSTED_PROXIES`` (none by
  default), so a caller cannot choose the address that per-IP login limits and
  the audit log see.
* Header bytes the HTTP parser refuses (control characters other than tab) never
  reach the app: the server answers 400 itself, in plain text. Everything that
  does reach the app — a tab, a non-ASCII byte — is the app's problem+json 400.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import asyncpg
import httpx
import pytest

from orderly.accounts.schemas import Role
from orderly.config import Settings
from orderly.core.db import Database
from tests.flags.test_processes import orderly, orderly_env
from tests.support.accounts import create_user, signed_in, unique_email
from tests.test_serve import free_port, wait_ready

pytestmark = pytest.mark.slow
SPOOFED = "203.0.113.9"


async def test_x_forwarded_for_counts_only_from_a_trusted_proxy(
    database: Database,
    settings: Settings,
    database_url: str,
    tmp_path: Path,
    raw_db: asyncpg.Connection,
) -> None:
    email = unique_email()
    await create_user(database, settings, email=email)
    for trusted, seen in (("", "127.0.0.1"), ("127.0.0.1", SPOOFED)):
        port = free_port()
        env = orderly_env(
            settings,
            database_url,
            tmp_path,
            ORDERLY_PORT=str(port),
            ORDERLY_TRUSTED_PROXIES=trusted,
        )
        base = f"http://127.0.0.1:{port}"
        with orderly("api", env, tmp_path) as api:
            await asyncio.to_thread(wait_ready, base, api)
            async with httpx.AsyncClient(base_url=base) as http:
                failed = await http.post(
                    "/v1/auth/token",
                    json={"email": email, "password": "not-the-password"},
                    headers={"X-Forwarded-For": SPOOFED},
                )
        assert failed.status_code == 401
        ip = await raw_db.fetchval(
            "SELECT ip FROM audit_event WHERE action = 'auth.login_failed'"
            " ORDER BY seq DESC LIMIT 1"
        )
        assert ip == seen, trusted or "no trusted proxy"


def raw_post(port: int, path: str, headers: list[bytes], body: bytes) -> tuple[bytes, bytes, bytes]:
    """POST with header bytes as given (no client library would send them): status, type, body."""
    request = b"\r\n".join(
        [
            f"POST {path} HTTP/1.1".encode(),
            b"Host: 127.0.0.1",
            b"Content-Type: application/json",
            f"Content-Length: {len(body)}".encode(),
            b"Connection: close",
            *headers,
            b"",
            b"",
        ]
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    content_type = next(
        (
            line.split(b":", 1)[1].strip()
            for line in lines
            if line.lower().startswith(b"content-type")
        ),
        b"",
    )
    return lines[0], content_type, payload


async def test_idempotency_keys_with_control_characters_are_400(
    client: httpx.AsyncClient,
    database: Database,
    settings: Settings,
    database_url: str,
    tmp_path: Path,
) -> None:
    staff = await signed_in(client, database, settings, Role.staff)
    port = free_port()
    env = orderly_env(settings, database_url, tmp_path, ORDERLY_PORT=str(port))
    auth = f"Authorization: Bearer {staff.access_token}".encode()
    body = b'{"sku":"RAW-1","name":"Raw","price_cents":1,"currency":"USD","stock":1}'
    with orderly("api", env, tmp_path) as api:
        await asyncio.to_thread(wait_ready, f"http://127.0.0.1:{port}", api)
        for key, answered_by_app in (
            (b"a\tb", True),
            (b"caf\xe9", True),
            (b"a\x01b", False),
            (b"a\x7fb", False),
            (b"a\x00b", False),
        ):
            status, content_type, payload = await asyncio.to_thread(
                raw_post, port, "/v1/products", [auth, b"Idempotency-Key: " + key], body
            )
            assert status.startswith(b"HTTP/1.1 400"), (key, status, payload)
            if answered_by_app:
                assert content_type == b"application/problem+json", key
                assert b'"code":"bad_request"' in payload
            else:  # refused by the HTTP parser before the app saw the request
                assert content_type.startswith(b"text/plain"), key
