"""Access tokens (JWT, algorithm pinned) and opaque refresh tokens.

HS256 with ``ORDERLY_JWT_SECRET``, or EdDSA when the key pair is configured;
the decoder accepts exactly that one algorithm, so ``alg: none`` and algorithm
confusion fail. Every claim that matters is required.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from orderly.accounts.schemas import Role
from orderly.config import Settings
from orderly.errors import Unauthorized

REQUIRED_CLAIMS = ["iss", "aud", "exp", "iat", "jti", "sub", "role", "sid"]
LEEWAY_SECONDS = 5


@dataclass(frozen=True)
class AccessClaims:
    """The verified claims of an access token."""

    user_id: uuid.UUID
    role: Role
    session_id: uuid.UUID
    jti: str
    expires_at: datetime

    @classmethod
    def from_jwt(cls, claims: dict[str, Any]) -> AccessClaims:
        """The typed claims of a verified token (KeyError/ValueError when one is malformed)."""
        return cls(
            user_id=uuid.UUID(claims["sub"]),
            role=Role(claims["role"]),
            session_id=uuid.UUID(claims["sid"]),
            jti=str(claims["jti"]),
            expires_at=datetime.fromtimestamp(claims["exp"], UTC),
        )


def algorithm(settings: Settings) -> str:
    """The one algorithm this deployment signs and accepts."""
    return "EdDSA" if settings.jwt_private_key is not None else "HS256"


def _signing_key(settings: Settings) -> Any:
    if settings.jwt_private_key is not None:
        return settings.jwt_private_key.get_secret_value()
    if settings.jwt_secret is None:
        raise RuntimeError("no JWT signing key configured")
    return settings.jwt_secret.get_secret_value()


def _verifying_key(settings: Settings) -> Any:
    if settings.jwt_private_key is not None:
        if settings.jwt_public_key is None:
            raise RuntimeError("ORDERLY_JWT_PUBLIC_KEY is required with ORDERLY_JWT_PRIVATE_KEY")
        return settings.jwt_public_key
    return _signing_key(settings)


def issue_access_token(
    settings: Settings, *, user_id: uuid.UUID, role: Role, session_id: uuid.UUID
) -> tuple[str, int]:
    """A signed access token and its lifetime in seconds."""
    now = datetime.now(UTC)
    ttl = settings.access_token_ttl_seconds
    claims = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": str(user_id),
        "role": role.value,
        "sid": str(session_id),
        "jti": uuid.uuid4().hex,
        "iat": now,
        "nbf": now,
        "exp": now + timedelta(seconds=ttl),
    }
    token = jwt.encode(claims, _signing_key(settings), algorithm=algorithm(settings))
    return token, ttl


def decode_access_token(settings: Settings, token: str) -> AccessClaims:
    """Verify signature, algorithm, issuer, audience and expiry; raise Unauthorized otherwise."""
    try:
        claims = jwt.decode(
            token,
            _verifying_key(settings),
            algorithms=[algorithm(settings)],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": REQUIRED_CLAIMS},
        )
        return AccessClaims.from_jwt(claims)
    except jwt.ExpiredSignatureError:
        raise Unauthorized("The access token has expired.") from None
    except (jwt.PyJWTError, ValueError, KeyError, TypeError):
        raise Unauthorized("The access token is invalid.") from None


class AccessTokenVerifier:
    """Verifies access tokens, remembering the ones it already verified until they expire.

    A token is immutable: once its signature, algorithm, issuer and audience
    checked out, only its expiry can change the answer. Re-verifying the HMAC
    or EdDSA signature on every request was a measurable share of the order
    path's CPU, so verified claims are kept in a bounded LRU map (one per
    process) and only the expiry is checked again.
    """

    def __init__(self, settings: Settings, *, capacity: int = 10_000) -> None:
        self.settings = settings
        self.capacity = capacity
        self._verified: OrderedDict[str, AccessClaims] = OrderedDict()

    def verify(self, token: str) -> AccessClaims:
        """The token's claims; Unauthorized when it is invalid or expired."""
        claims = self._verified.get(token)
        if claims is None:
            claims = decode_access_token(self.settings, token)
            self._verified[token] = claims
            if len(self._verified) > self.capacity:
                self._verified.popitem(last=False)
        else:
            self._verified.move_to_end(token)
        if claims.expires_at + timedelta(seconds=LEEWAY_SECONDS) <= datetime.now(UTC):
            self._verified.pop(token, None)
            raise Unauthorized("The access token has expired.")
        return claims
