"""Standard Webhooks (standardwebhooks.com): signed outbound deliveries, verified callbacks.

Outbound: the body is fixed by the event (``{type, timestamp, data}`` with the
event's own time), ``webhook-id`` is derived from the event key, so every retry
of one event carries the same id and body — receivers dedupe on the id.
``webhook-timestamp`` is the time of the attempt (receivers reject stale
ones) and ``webhook-signature`` is the HMAC the ``standardwebhooks`` library
computes. Each receiver has its own circuit breaker.

Inbound: :func:`verify_webhook` checks a callback's signature and timestamp
tolerance before anything else reads the body.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import hashlib
import hmac
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
from pydantic import SecretStr
from standardwebhooks import Webhook

from orderly import errors
from orderly.config import Settings
from orderly.core.outbound import FAILURE_STATUSES, Breakers, Timeouts, http_client
from orderly.core.telemetry import get_logger

log = get_logger(__name__)

WAREHOUSE = "warehouse"
DEFAULT_TOLERANCE = timedelta(minutes=5)
_ID_NAMESPACE = uuid.UUID("0d2b8f3c-5b6e-4f7a-9c39-1f5b0a6e7d21")


def webhook_id_for(event_key: str) -> str:
    """The ``webhook-id`` of an event: the same for every attempt and every worker."""
    return "msg_" + uuid.uuid5(_ID_NAMESPACE, event_key).hex


@dataclasses.dataclass(frozen=True)
class Receiver:
    """A configured webhook endpoint and the secret its deliveries are signed with."""

    name: str
    url: str
    secret: SecretStr

    @property
    def breaker(self) -> str:
        """Name of this receiver's circuit breaker."""
        return f"webhook:{self.name}"


@dataclasses.dataclass(frozen=True)
class WebhookEvent:
    """One event to announce; ``occurred_at`` is fixed when the event is enqueued."""

    event_key: str
    event_type: str
    data: Mapping[str, Any]
    occurred_at: datetime


@dataclasses.dataclass(frozen=True)
class Delivery:
    """A delivery the receiver accepted."""

    webhook_id: str
    status_code: int
    body_sha256: str


class DeliveryFailed(Exception):
    """The receiver is unwell (5xx, 408, 429, redirect) or unreachable: retry later."""


class ReceiverRejected(DeliveryFailed):
    """The receiver answered 4xx: it is up (the breaker stays closed) but refused this event."""


def render_body(event: WebhookEvent) -> bytes:
    """The Standard Webhooks payload, byte-identical on every attempt."""
    occurred = event.occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return orjson.dumps({"type": event.event_type, "timestamp": occurred, "data": event.data})


class WebhookSender:
    """Signs and posts events to named receivers through their circuit breakers."""

    def __init__(
        self,
        receivers: Mapping[str, Receiver],
        breakers: Breakers,
        *,
        timeouts: Timeouts | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        """Deliver to *receivers* by name; *timeouts* bound each phase, their sum the whole call."""
        self.receivers = dict(receivers)
        self.breakers = breakers
        self.timeouts = timeouts or Timeouts(connect=3.0, read=10.0, write=10.0, pool=3.0)
        self._client = client

    @property
    def client(self) -> httpx.AsyncClient:
        """The pooled client, created on first use (inside the worker's event loop)."""
        if self._client is None:
            self._client = http_client(timeouts=self.timeouts)
        return self._client

    def receiver(self, name: str) -> Receiver | None:
        """The receiver called *name*, or None when it is not configured."""
        return self.receivers.get(name)

    async def deliver(self, receiver: Receiver, event: WebhookEvent) -> Delivery:
        """POST *event* once; return on 2xx, raise :class:`DeliveryFailed` otherwise."""
        body = render_body(event)
        webhook_id = webhook_id_for(event.event_key)
        attempt_at = datetime.fromtimestamp(int(time.time()), UTC)
        signature = Webhook(receiver.secret.get_secret_value()).sign(
            webhook_id, attempt_at, body.decode()
        )
        headers = {
            "content-type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(int(attempt_at.timestamp())),
            "webhook-signature": signature,
        }
        t = self.timeouts
        deadline = t.connect + t.write + t.read + t.pool
        async with self.breakers.guard(receiver.breaker, ignore=(ReceiverRejected,)):
            try:
                async with asyncio.timeout(deadline):
                    response = await self.client.post(receiver.url, content=body, headers=headers)
            except (httpx.TransportError, TimeoutError) as exc:
                kind = "timed out" if isinstance(exc, httpx.TimeoutException | TimeoutError) else ""
                raise DeliveryFailed(
                    f"{receiver.name}: {kind or type(exc).__name__} ({webhook_id})"
                ) from exc
            status = response.status_code
            if 200 <= status < 300:
                return Delivery(webhook_id, status, hashlib.sha256(body).hexdigest())
            if 400 <= status < 500 and status not in FAILURE_STATUSES:
                raise ReceiverRejected(f"{receiver.name} refused {webhook_id}: HTTP {status}")
            raise DeliveryFailed(f"{receiver.name} answered HTTP {status} to {webhook_id}")

    async def aclose(self) -> None:
        """Close the connection pool."""
        if self._client is not None:
            await self._client.aclose()


def receivers_from(settings: Settings) -> dict[str, Receiver]:
    """The receivers the settings configure (today: the warehouse, when its URL is set)."""
    if settings.warehouse_webhook_url is None or settings.warehouse_webhook_secret is None:
        return {}
    return {
        WAREHOUSE: Receiver(
            WAREHOUSE, settings.warehouse_webhook_url, settings.warehouse_webhook_secret
        )
    }


# ---------------------------------------------------------------- inbound


@dataclasses.dataclass(frozen=True)
class VerifiedWebhook:
    """A callback whose signature verified: its id (for dedupe), time and JSON payload."""

    webhook_id: str
    timestamp: datetime
    payload: Any


def verify_webhook(
    secret: SecretStr | str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    tolerance: timedelta = DEFAULT_TOLERANCE,
    now: datetime | None = None,
) -> VerifiedWebhook:
    """Verify a Standard Webhooks request; raise ``InvalidWebhookSignature`` (401) if not.

    Checks, in order: the three headers exist, the timestamp is within
    *tolerance* of *now* (replayed captures expire), and one ``v1`` signature
    matches (constant-time). Only then is the body parsed.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    webhook_id = lowered.get("webhook-id")
    stamp = lowered.get("webhook-timestamp")
    signatures = lowered.get("webhook-signature")
    if not (webhook_id and stamp and signatures):
        raise errors.InvalidWebhookSignature(
            "Missing webhook-id, webhook-timestamp or webhook-signature."
        )
    try:
        timestamp = datetime.fromtimestamp(int(stamp), UTC)
    except (ValueError, OverflowError, OSError):
        raise errors.InvalidWebhookSignature("Malformed webhook-timestamp.") from None
    current = now or datetime.now(UTC)
    if abs(current - timestamp) > tolerance:
        raise errors.InvalidWebhookSignature("webhook-timestamp is outside the allowed tolerance.")
    raw_secret = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    try:
        expected = Webhook(raw_secret).sign(webhook_id, timestamp, body.decode("utf-8"))
    except UnicodeDecodeError:
        raise errors.InvalidWebhookSignature("Body is not UTF-8.") from None
    expected_bytes = base64.b64decode(expected.partition(",")[2])
    if not any(_matches(candidate, expected_bytes) for candidate in signatures.split()):
        raise errors.InvalidWebhookSignature("No matching webhook signature.")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise errors.InvalidInput("The webhook body is not JSON.") from None
    return VerifiedWebhook(webhook_id=webhook_id, timestamp=timestamp, payload=payload)


def _matches(candidate: str, expected: bytes) -> bool:
    version, _, value = candidate.partition(",")
    if version != "v1":
        return False
    try:
        given = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(given, expected)
