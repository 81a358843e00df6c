"""Verification of inbound Standard Webhooks (the warehouse's signed callbacks)."""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr
from standardwebhooks import Webhook

from orderly import errors
from orderly.errors import InvalidWebhookSignature
from orderly.notifications.webhooks import verify_webhook

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
BODY = b'{"order_id":"0b5c0a9e-1111-4e0e-9b7a-6f1d1a2b3c4d","event":"shipped"}'


def _signed(
    body: bytes = BODY, *, at: datetime | None = None, secret: str = SECRET
) -> dict[str, str]:
    moment = at or datetime.now(UTC)
    stamp = int(moment.timestamp())
    signature = Webhook(secret).sign(
        "msg_callback_1", datetime.fromtimestamp(stamp, UTC), body.decode()
    )
    return {
        "Webhook-Id": "msg_callback_1",
        "Webhook-Timestamp": str(stamp),
        "Webhook-Signature": signature,
    }


def test_a_signed_callback_verifies_and_returns_its_payload() -> None:
    verified = verify_webhook(SecretStr(SECRET), BODY, _signed())
    assert verified.webhook_id == "msg_callback_1"
    assert verified.payload["event"] == "shipped"


def test_any_matching_signature_among_several_is_enough() -> None:
    headers = _signed()
    other = Webhook("whsec_" + base64.b64encode(b"x" * 24).decode()).sign(
        "msg_callback_1", datetime.now(UTC), BODY.decode()
    )
    headers["Webhook-Signature"] = f"v2,abc {other} {headers['Webhook-Signature']}"
    assert verify_webhook(SECRET, BODY, headers).payload["event"] == "shipped"


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        pytest.param(BODY.replace(b"shipped", b"returned"), _signed(), id="tampered body"),
        pytest.param(
            BODY, _signed(secret="whsec_" + base64.b64encode(b"k" * 24).decode()), id="wrong secret"
        ),
        pytest.param(
            BODY, _signed(at=datetime.now(UTC) - timedelta(hours=1)), id="stale timestamp"
        ),
        pytest.param(
            BODY, _signed(at=datetime.now(UTC) + timedelta(hours=1)), id="future timestamp"
        ),
        pytest.param(
            BODY, {**_signed(), "Webhook-Signature": "v1,not-base64!"}, id="garbage signature"
        ),
        pytest.param(BODY, {**_signed(), "Webhook-Timestamp": "soon"}, id="garbage timestamp"),
        pytest.param(BODY, {"Webhook-Id": "msg_1"}, id="missing headers"),
    ],
)
def test_a_bad_callback_is_unauthorized(body: bytes, headers: dict[str, str]) -> None:
    with pytest.raises(InvalidWebhookSignature) as caught:
        verify_webhook(SECRET, body, headers)
    assert isinstance(caught.value, errors.Unauthorized)  # → 401 problem+json


def test_tolerance_is_a_parameter() -> None:
    old = _signed(at=datetime.now(UTC) - timedelta(minutes=6))
    assert verify_webhook(SECRET, BODY, old, tolerance=timedelta(minutes=10)).webhook_id


def test_signed_non_json_body_is_invalid_input() -> None:
    with pytest.raises(errors.InvalidInput):
        verify_webhook(SECRET, b"shipped", _signed(b"shipped"))
