"""Fixtures shared by the flag tests that route users to the external recommendation model."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.receivers import HttpReceiver


@pytest.fixture
async def model() -> AsyncIterator[HttpReceiver]:
    """The external recommendation model, down: every call answers 500."""
    receiver = HttpReceiver(default=500)
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()
