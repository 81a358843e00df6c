"""Accounts' public shapes: roles, the authenticated Principal, request and response bodies.

Other domains import :class:`Role` and :class:`Principal` from here (services
take a Principal, never a request). Request bodies forbid unknown fields, so a
client can never slip in ``role`` or any other privileged field.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints

from orderly.core.inputs import Input


class Role(enum.StrEnum):
    """What a user may do: customers their own data, staff the shop, admins everything."""

    customer = "customer"
    staff = "staff"
    admin = "admin"


ALL_ROLES: frozenset[Role] = frozenset(Role)
STAFF_ROLES: frozenset[Role] = frozenset({Role.staff, Role.admin})


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: who (``id``), as what (``role``), in which login session."""

    id: uuid.UUID
    role: Role
    session_id: uuid.UUID | None = None

    @property
    def is_staff(self) -> bool:
        """Staff and admins see every customer's resources."""
        return self.role in STAFF_ROLES

    def may_see(self, owner_id: uuid.UUID) -> bool:
        """True when the caller owns the resource or is staff (callers answer 404 otherwise)."""
        return self.id == owner_id or self.is_staff


class _Strict(Input):
    model_config = ConfigDict(str_strip_whitespace=True)


Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Phone = Annotated[str, StringConstraints(min_length=3, max_length=40, pattern=r"^[0-9+()./ -]+$")]
# Length is checked in bytes by argon2 as well; 256 bounds the hashing cost of one request.
# Taken byte for byte: surrounding spaces are part of a password, never trimmed.
Password = Annotated[str, StringConstraints(strip_whitespace=False, min_length=1, max_length=256)]
# The service checks length and the common-password list (one message for both rules).
NewPassword = Annotated[
    Password,
    Field(
        description="At least 12 characters, not a common password.",
        json_schema_extra={"minLength": 12},
    ),
]


class Address(_Strict):
    """A postal address (stored encrypted)."""

    line1: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    line2: Annotated[str | None, StringConstraints(max_length=200)] = None
    city: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    postal_code: Annotated[str, StringConstraints(min_length=1, max_length=20)]
    country: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]


class UserRegister(_Strict):
    """``POST /v1/auth/register``: new customers only; the role is never the client's choice."""

    email: EmailStr
    password: NewPassword
    name: Name
    phone: Phone | None = None
    shipping_address: Address | None = None


class UserRead(BaseModel):
    """A user as the API shows it (personal data decrypted for those allowed to see it)."""

    id: uuid.UUID
    email: str
    role: Role
    name: str | None
    phone: str | None
    shipping_address: Address | None
    created_at: datetime


class TokenRequest(_Strict):
    """``POST /v1/auth/token``."""

    # A NUL is refused by the login itself, which counts and audits the attempt.
    allows_nul = True

    email: Annotated[str, StringConstraints(min_length=1, max_length=320)]
    password: Password


class TokenPair(BaseModel):
    """A short-lived access token and the refresh token that renews it."""

    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth 2 token type, not a secret
    expires_in: int
    refresh_token: str


class RefreshRequest(_Strict):
    """``POST /v1/auth/refresh``: spends the refresh token, returns a new pair."""

    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=512)]


class LogoutRequest(_Strict):
    """``POST /v1/auth/logout``: optionally names a refresh token whose family is revoked too."""

    refresh_token: Annotated[str | None, StringConstraints(max_length=512)] = None


class RoleUpdate(_Strict):
    """``PATCH /v1/users/{id}/role``."""

    role: Role
