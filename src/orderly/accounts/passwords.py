"""Password policy: at least 12 characters and not a well-known password.

The list ships with the package (``common_passwords.txt``: breach top lists
and their usual suffixed variants) and is matched case-insensitively.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from orderly.errors import InvalidInput

MIN_LENGTH = 12


@cache
def common_passwords() -> frozenset[str]:
    """The shipped list of common passwords, lower-cased (loaded once)."""
    text = resources.files("orderly.accounts").joinpath("common_passwords.txt").read_text("utf-8")
    return frozenset(
        line.strip().lower()
        for line in text.splitlines()
        if line.strip() and not line.startswith("#")
    )


def check_password(password: str, *, email: str | None = None) -> None:
    """Raise InvalidInput (422) when *password* breaks the policy; the message never echoes it."""
    if len(password) < MIN_LENGTH:
        raise InvalidInput(f"must be at least {MIN_LENGTH} characters", field="password")
    lowered = password.lower()
    if lowered in common_passwords():
        raise InvalidInput("is too common; choose another", field="password")
    if email and lowered in {email.lower(), email.split("@", 1)[0].lower()}:
        raise InvalidInput("must not be your e-mail address", field="password")
