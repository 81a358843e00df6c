"""What the gateway retries, against a scripted HTTP server standing in for Stripe.

Stripe-safe failures (5xx, connection errors) are retried with the same
idempotency key; card errors and invalid requests are not; a hung server costs
at most the deadline.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from orderly import errors
from orderly.core.outbound import Breakers
from orderly.errors import CardDeclined
from orderly.payments.gateway import GatewayOptions, StripeGateway

# stripe's HTTPXClient posts form bytes through httpx's deprecated ``data=`` path.
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=:DeprecationWarning")

INTENT = {
    "id": "pi_scripted",
    "object": "payment_intent",
    "status": "succeeded",
    "amount": 100,
    "currency": "usd",
    "metadata": {},
}
SERVER_ERROR = (500, {"error": {"type": "api_error", "message": "boom"}})
DECLINE = (402, {"error": {"type": "card_error", "code": "card_declined", "message": "Declined"}})
INVALID = (400, {"error": {"type": "invalid_request_error", "message": "No such payment_method"}})


class Script:
    """Answers in order (the last one repeats); remembers each request's idempotency key."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, dict[str, Any]]] = []
        self.keys: list[str | None] = []
        self.delay = 0.0


@pytest.fixture
def scripted() -> Iterator[tuple[Script, str]]:
    """A local HTTP server replaying a script; yields it and its base URL."""
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            script.keys.append(self.headers.get("Idempotency-Key"))
            time.sleep(script.delay)
            index = min(len(script.keys), len(script.answers)) - 1
            status, body = script.answers[index]
            data = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout test)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield script, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _gateway(base: str, **options: Any) -> StripeGateway:
    values: dict[str, Any] = {
        "max_network_retries": 2,
        "read_timeout": 2,
        "deadline": 10,
        "forbid_redirects": False,
    }
    values.update(options)
    return StripeGateway(
        "sk_test_scripted", api_base=base, breakers=Breakers(), options=GatewayOptions(**values)
    )


async def _charge(gateway: StripeGateway) -> Any:
    return await gateway.create_payment(
        amount_cents=100,
        currency="USD",
        payment_method="pm_x",
        idempotency_key="our-key-1",
        metadata={},
    )


async def test_server_errors_are_retried_with_the_same_idempotency_key(
    scripted: tuple[Script, str],
) -> None:
    script, base = scripted
    script.answers = [SERVER_ERROR, SERVER_ERROR, (200, INTENT)]
    gateway = _gateway(base)
    try:
        intent = await _charge(gateway)
    finally:
        await gateway.aclose()
    assert intent.id == "pi_scripted"
    assert script.keys == ["our-key-1"] * 3


@pytest.mark.parametrize(
    ("answer", "raised"), [(DECLINE, CardDeclined), (INVALID, errors.InvalidInput)]
)
async def test_card_and_request_errors_are_not_retried(
    scripted: tuple[Script, str], answer: tuple[int, dict[str, Any]], raised: type[Exception]
) -> None:
    script, base = scripted
    script.answers = [answer]
    gateway = _gateway(base)
    try:
        for _ in range(6):  # more than the breaker threshold: these are not Stripe failures
            with pytest.raises(raised):
                await _charge(gateway)
        assert await gateway.breakers.state("stripe") == "closed"
    finally:
        await gateway.aclose()
    assert script.keys == ["our-key-1"] * 6


async def test_a_hung_stripe_costs_at_most_the_deadline(scripted: tuple[Script, str]) -> None:
    script, base = scripted
    script.answers = [(200, INTENT)]
    script.delay = 5
    gateway = _gateway(base, read_timeout=0.3, max_network_retries=1, deadline=1.5)
    started = time.monotonic()
    try:
        with pytest.raises(errors.Unavailable):
            await _charge(gateway)
    finally:
        await gateway.aclose()
    assert time.monotonic() - started < 2.0
