"""Catalog tests: cheap (real) password hashing for the staff users they sign in."""

from __future__ import annotations

from pathlib import Path

import pytest

from orderly.config import Settings
from tests.conftest import make_settings
from tests.support.accounts import CHEAP_HASHING


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Test settings with cheap hashing."""
    return make_settings(database_url, tmp_path, **CHEAP_HASHING)
