"""Console tests: cheap (real) password hashing and helpers that sign in through the form."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from orderly.config import Settings
from tests.conftest import make_settings
from tests.support.accounts import CHEAP_HASHING, PASSWORD

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Test settings with cheap password hashing."""
    return make_settings(database_url, tmp_path, **CHEAP_HASHING)


def csrf_of(html: str) -> str:
    """The CSRF token of the first form on a page."""
    found = _CSRF.search(html)
    assert found is not None, "no CSRF token on the page"
    return found.group(1)


async def console_sign_in(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD
) -> httpx.Response:
    """Fill in and post the sign-in form (the answer itself, redirects not followed)."""
    page = await client.get("/console/sign-in")
    assert page.status_code == 200, page.text
    return await client.post(
        "/console/sign-in",
        data={"email": email, "password": password, "csrf_token": csrf_of(page.text)},
    )
