"""Payments fixtures: a real localstripe server and gateways pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from orderly.core.outbound import Breakers
from orderly.payments.gateway import GatewayOptions, StripeGateway
from tests.support.stripe import TEST_API_KEY, localstripe_server


@pytest.fixture(scope="session")
def stripe_base() -> Iterator[str]:
    """Base URL of a localstripe server (ORDERLY_STRIPE_API_BASE in app tests)."""
    with localstripe_server() as url:
        yield url


@pytest.fixture
async def gateway(stripe_base: str) -> AsyncIterator[StripeGateway]:
    """A gateway on localstripe with its own breaker registry."""
    gw = StripeGateway(
        TEST_API_KEY,
        api_base=stripe_base,
        breakers=Breakers(),
        options=GatewayOptions(read_timeout=5, deadline=10, forbid_redirects=False),
    )
    yield gw
    await gw.aclose()
