"""The console's session cookie and CSRF tokens.

The cookie holds a signed token (HS256 under a key derived from the
deployment's JWT secret, audience ``orderly-console``, so it is never accepted
as an API bearer token nor the reverse) naming the user and the login session
(the refresh *family* that ``accounts.sessions.login`` opened). Every request
resolves it through ``accounts.service.resolve_principal``: the role comes from
the database, and signing out revokes the family, so a copied cookie stops
working at once.

CSRF: every form carries a synchronizer token, an HMAC of the session id under
a second derived key; the sign-in form (no session yet) carries an HMAC of a
random pre-session cookie instead (double submit bound to that cookie).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from datetime import UTC, datetime, timedelta

import jwt

from orderly.accounts.schemas import Role
from orderly.accounts.tokens import AccessClaims
from orderly.config import Settings
from orderly.errors import Unauthorized

COOKIE = "orderly_console"
SIGNIN_COOKIE = "orderly_console_signin"
COOKIE_PATH = "/console"
SESSION_TTL = timedelta(hours=8)
AUDIENCE = "orderly-console"
_ALGORITHM = "HS256"
_REQUIRED = ["iss", "aud", "exp", "iat", "jti", "sub", "role", "sid"]


def _root_secret(settings: Settings) -> bytes:
    secret = settings.jwt_secret or settings.jwt_private_key
    if secret is None:
        raise RuntimeError("no JWT secret configured")
    return secret.get_secret_value().encode()


def derived_key(settings: Settings, purpose: str) -> bytes:
    """A key for one *purpose* ("session", "csrf"), derived from the deployment's JWT secret."""
    return hmac.new(
        _root_secret(settings), b"orderly-console:" + purpose.encode(), "sha256"
    ).digest()


def issue(settings: Settings, *, user_id: uuid.UUID, role: Role, session_id: uuid.UUID) -> str:
    """The cookie value for a signed-in user's login session."""
    now = datetime.now(UTC)
    claims = {
        "iss": settings.jwt_issuer,
        "aud": AUDIENCE,
        "sub": str(user_id),
        "role": role.value,
        "sid": str(session_id),
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + SESSION_TTL,
    }
    return jwt.encode(claims, derived_key(settings, "session"), algorithm=_ALGORITHM)


def verify(settings: Settings, value: str) -> AccessClaims:
    """The claims of a cookie value; Unauthorized when forged, altered or expired."""
    try:
        claims = jwt.decode(
            value,
            derived_key(settings, "session"),
            algorithms=[_ALGORITHM],
            audience=AUDIENCE,
            issuer=settings.jwt_issuer,
            options={"require": _REQUIRED},
        )
        return AccessClaims.from_jwt(claims)
    except (jwt.PyJWTError, ValueError, KeyError, TypeError):
        raise Unauthorized("Please sign in.") from None


def csrf_token(settings: Settings, session_id: uuid.UUID) -> str:
    """The synchronizer token of one login session (same for all its forms)."""
    return hmac.new(derived_key(settings, "csrf"), session_id.bytes, hashlib.sha256).hexdigest()


def signin_nonce() -> str:
    """A fresh random value for the pre-session cookie of the sign-in form."""
    return secrets.token_urlsafe(32)


def signin_token(settings: Settings, nonce: str) -> str:
    """The sign-in form's CSRF token, bound to its pre-session cookie."""
    return hmac.new(
        derived_key(settings, "csrf"), b"signin:" + nonce.encode(), hashlib.sha256
    ).hexdigest()


def same(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a submitted token with the expected one."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())
