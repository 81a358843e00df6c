"""Order tests: cheap (real) password hashing and a rate limit that races do not hit."""

from __future__ import annotations

from pathlib import Path

import pytest

from orderly.config import Settings
from tests.conftest import make_settings
from tests.support.accounts import CHEAP_HASHING


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Test settings for order flows."""
    return make_settings(database_url, tmp_path, order_rate_limit="10000/minute", **CHEAP_HASHING)
