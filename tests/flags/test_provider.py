"""The OpenFeature provider: an OpenFeature client resolves orderly's flags in process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason
from openfeature.provider.no_op_provider import NoOpProvider

from orderly.core import request_scope
from orderly.flags.engine import Snapshot
from orderly.flags.provider import OrderlyProvider, flag_context
from tests.support import hygiene

FEATURES = [
    {
        "name": "checkout.new",
        "enabled": True,
        "strategies": [
            {
                "name": "flexibleRollout",
                "parameters": {"rollout": "100", "stickiness": "default", "groupId": "x"},
                "constraints": [
                    {"contextName": "role", "operator": "IN", "values": ["customer"]},
                ],
            }
        ],
    },
    {
        "name": "banner.colour",
        "enabled": True,
        "strategies": [{"name": "default", "parameters": {}}],
        "variants": [
            {
                "name": "blue",
                "weight": 1000,
                "stickiness": "default",
                "payload": {"type": "string", "value": "#0000ff"},
                "overrides": [],
            }
        ],
    },
    {
        "name": "checkout.limits",
        "enabled": True,
        "strategies": [{"name": "default", "parameters": {}}],
        "variants": [
            {
                "name": "tight",
                "weight": 1000,
                "payload": {"type": "json", "value": '{"max_items": 5}'},
            }
        ],
    },
    {"name": "off.flag", "enabled": False, "strategies": [{"name": "default"}]},
]


@pytest.fixture
def openfeature_api() -> Iterator[None]:
    """OpenFeature's API is process-wide: start from its defaults and put them back."""
    assert isinstance(api.provider_registry.get_default_provider(), NoOpProvider)
    try:
        yield
    finally:
        api.shutdown()  # providers back to no-op; hooks, context and propagator cleared


def test_openfeature_client_resolves_booleans_and_variants(openfeature_api: None) -> None:
    before = hygiene.fingerprint()
    snapshot = Snapshot(FEATURES, [], 1)
    api.set_provider_and_wait(OrderlyProvider(lambda: snapshot))
    assert hygiene.changes(before, hygiene.fingerprint())  # the leak guard would notice
    client = api.get_client()
    customer = EvaluationContext(targeting_key="user-1", attributes={"role": "customer"})
    staff = EvaluationContext(targeting_key="user-2", attributes={"role": "staff"})

    assert client.get_boolean_value("checkout.new", False, customer) is True
    assert client.get_boolean_value("checkout.new", True, staff) is False
    assert client.get_boolean_value("off.flag", True, customer) is False
    unknown = client.get_boolean_details("no.such.flag", True, customer)
    assert (unknown.value, unknown.error_code) == (True, ErrorCode.FLAG_NOT_FOUND)

    colour = client.get_string_details("banner.colour", "#000000", customer)
    assert (colour.value, colour.variant, colour.reason) == ("#0000ff", "blue", Reason.SPLIT)
    assert client.get_object_value("checkout.limits", {}, customer) == {"max_items": 5}
    mismatch = client.get_integer_details("banner.colour", 7, customer)
    assert (mismatch.value, mismatch.error_code) == (7, ErrorCode.TYPE_MISMATCH)
    assert client.get_string_value("off.flag", "fallback", customer) == "fallback"
    assert api.get_provider_metadata().name == "orderly"


def test_provider_notes_flags_in_the_request_scope() -> None:
    snapshot = Snapshot(FEATURES, [], 1)
    provider = OrderlyProvider(lambda: snapshot)
    token = request_scope.begin()
    try:
        provider.resolve_boolean_details("checkout.new", False, EvaluationContext("u", {}))
        scope = request_scope.current()
        assert scope is not None
        assert scope.flags == {"checkout.new": False}  # no role property: constraint fails
    finally:
        request_scope.end(token, "GET", "/x", 200, 0.0)


def test_context_mapping_follows_unleash_fields() -> None:
    ctx = flag_context(
        EvaluationContext(
            targeting_key="42",
            attributes={"sessionId": "s", "environment": "production", "tier": 3},
        )
    )
    assert (ctx.user_id, ctx.session_id, ctx.environment) == ("42", "s", "production")
    assert ctx.properties == {"tier": "3"}
