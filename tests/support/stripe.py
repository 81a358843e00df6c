"""A real localstripe server for tests, test cards, and signed Stripe webhook deliveries."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import stripe

TEST_API_KEY = "sk_test_orderly"
WEBHOOK_SECRET = "whsec_orderly_test_secret"
CARD_OK = "4242424242424242"
CARD_DECLINED = "4000000000000341"


def free_port() -> int:
    """A TCP port nobody listens on (closed again, so connecting is refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start(port: int) -> subprocess.Popen[bytes] | None:
    """Start localstripe on *port*; None if it did not come up there (port taken)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "localstripe", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            httpx.get(f"http://127.0.0.1:{port}/v1/customers", auth=(TEST_API_KEY, ""), timeout=1)
        except httpx.TransportError:
            time.sleep(0.1)
            continue
        if proc.poll() is None:  # it is ours answering, not another test run's
            return proc
    proc.kill()
    proc.wait(10)
    return None


@contextmanager
def localstripe_server() -> Iterator[str]:
    """Run ``python -m localstripe`` on a free port; yield its base URL."""
    for _ in range(3):  # another process may take the port between our probe and the bind
        port = free_port()
        proc = _start(port)
        if proc is not None:
            break
    else:
        raise RuntimeError("localstripe did not start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


async def payment_method(api_base: str, number: str) -> str:
    """A PaymentMethod id for a test card (localstripe knows no ``pm_card_*`` shortcuts)."""
    client = stripe.StripeClient(
        TEST_API_KEY, base_addresses={"api": api_base}, http_client=stripe.HTTPXClient()
    )
    method = await client.v1.payment_methods.create_async(
        {
            "type": "card",
            "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        }
    )
    return str(method.id)


def signed_delivery(
    event: dict[str, Any], secret: str = WEBHOOK_SECRET, *, at: int | None = None
) -> tuple[bytes, str]:
    """The body and ``Stripe-Signature`` header Stripe would send for *event*."""
    payload = json.dumps(event)
    timestamp = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256)
    return payload.encode(), f"t={timestamp},v1={mac.hexdigest()}"


def intent_succeeded_event(
    event_id: str, *, intent_id: str, amount: int, currency: str, reference: str, user_id: str = ""
) -> dict[str, Any]:
    """A ``payment_intent.succeeded`` event for one of our references."""
    return {
        "id": event_id,
        "object": "event",
        "type": "payment_intent.succeeded",
        "created": int(time.time()),
        "data": {
            "object": {
                "id": intent_id,
                "object": "payment_intent",
                "status": "succeeded",
                "amount": amount,
                "currency": currency.lower(),
                "metadata": {"orderly_reference": reference, "orderly_user_id": user_id},
            }
        },
    }
