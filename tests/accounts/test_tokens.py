"""Access tokens: pinned algorithm, required claims; every forgery or expiry is a 401 problem."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from asgi_lifespan import LifespanManager
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from orderly.accounts.schemas import Role
from orderly.config import Settings
from orderly.core.db import Database
from orderly.main import create_app
from tests.conftest import make_settings
from tests.support.accounts import CHEAP_HASHING, SignedInUser, signed_in


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def claims_for(user: SignedInUser, settings: Settings, **changes: Any) -> dict[str, Any]:
    valid = jwt.decode(
        user.access_token,
        settings.jwt_secret.get_secret_value() if settings.jwt_secret else "",
        algorithms=["HS256"],
        audience=settings.jwt_audience,
    )
    valid.update(changes)
    return valid


def assert_401(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "unauthorized"
    assert body["request_id"] == response.headers["x-request-id"]
    assert response.headers["www-authenticate"].startswith("Bearer")


async def me(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get("/v1/users/me", headers={"Authorization": f"Bearer {token}"})


async def test_valid_token_has_pinned_algorithm_and_all_claims(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    user = await signed_in(client, database, settings)
    header = jwt.get_unverified_header(user.access_token)
    assert header["alg"] == "HS256"
    claims = claims_for(user, settings)
    assert {"iss", "aud", "exp", "iat", "jti", "sub", "role", "sid"} <= claims.keys()
    assert claims["sub"] == str(user.id)
    assert claims["role"] == "customer"
    assert claims["iss"] == settings.jwt_issuer
    assert (await me(client, user.access_token)).status_code == 200


async def test_alg_none_is_rejected(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    user = await signed_in(client, database, settings)
    forged = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims_for(user, settings))}."
    assert_401(await me(client, forged))


async def test_wrong_signature_is_rejected(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    user = await signed_in(client, database, settings)
    forged = jwt.encode(claims_for(user, settings), "another-secret-" * 4, algorithm="HS256")
    assert_401(await me(client, forged))
    # A tampered payload under the original signature fails too.
    head, _, sig = user.access_token.split(".")
    tampered = f"{head}.{_b64(claims_for(user, settings, role='admin'))}.{sig}"
    assert_401(await me(client, tampered))


async def test_wrong_audience_or_issuer_is_rejected(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    user = await signed_in(client, database, settings)
    secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else ""
    for change in ({"aud": "another-api"}, {"iss": "someone-else"}):
        token = jwt.encode(claims_for(user, settings, **change), secret, algorithm="HS256")
        assert_401(await me(client, token))


async def test_expired_token_is_rejected(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    user = await signed_in(client, database, settings)
    secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else ""
    past = datetime.now(UTC) - timedelta(minutes=5)
    token = jwt.encode(
        claims_for(user, settings, exp=past, iat=past - timedelta(minutes=15), nbf=past),
        secret,
        algorithm="HS256",
    )
    response = await me(client, token)
    assert_401(response)
    assert response.json()["detail"] == "The access token has expired."


async def test_missing_claims_malformed_and_absent_tokens_are_rejected(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    user = await signed_in(client, database, settings)
    secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else ""
    for claim in ("exp", "jti", "sid", "role"):
        claims = claims_for(user, settings)
        del claims[claim]
        assert_401(await me(client, jwt.encode(claims, secret, algorithm="HS256")))
    assert_401(await me(client, "not.a.jwt"))
    assert_401(await client.get("/v1/users/me"))
    basic = await client.get("/v1/users/me", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert_401(basic)


async def test_token_for_a_user_that_does_not_exist_is_rejected(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    user = await signed_in(client, database, settings)
    secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else ""
    ghost = claims_for(user, settings, sub=str(uuid.uuid4()), role=Role.admin.value)
    assert_401(await me(client, jwt.encode(ghost, secret, algorithm="HS256")))


@pytest.fixture
async def eddsa_client(database: Database, database_url: str, tmp_path: Path) -> Any:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    settings = make_settings(
        database_url,
        tmp_path,
        jwt_private_key=private,
        jwt_public_key=public,
        **CHEAP_HASHING,
    )
    application = create_app(settings, database_url=database_url)
    async with LifespanManager(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c, settings, public


async def test_eddsa_tokens_and_no_algorithm_confusion(
    eddsa_client: Any, database: Database
) -> None:
    client, settings, public_pem = eddsa_client
    user = await signed_in(client, database, settings)
    assert jwt.get_unverified_header(user.access_token)["alg"] == "EdDSA"
    assert (await me(client, user.access_token)).status_code == 200
    # HS256 signed with the *public* key (the classic confusion attack) is refused.
    claims = jwt.decode(
        user.access_token, public_pem, algorithms=["EdDSA"], audience=settings.jwt_audience
    )
    # PyJWT itself refuses to sign that, so the attacker's token is assembled by hand.
    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64(claims)}"
    mac = hmac.new(public_pem.encode(), signing_input.encode(), hashlib.sha256).digest()
    confused = f"{signing_input}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"
    assert_401(await me(client, confused))


def test_the_verifier_remembers_valid_tokens_until_they_expire(settings: Settings) -> None:
    from orderly.accounts.tokens import AccessTokenVerifier, issue_access_token
    from orderly.errors import Unauthorized

    verifier = AccessTokenVerifier(settings, capacity=2)
    user, session = uuid.uuid4(), uuid.uuid4()
    token, _ = issue_access_token(settings, user_id=user, role=Role.customer, session_id=session)
    first = verifier.verify(token)
    assert verifier.verify(token) is first  # the second call checked the expiry only
    assert first.user_id == user

    # A forged token is never remembered, however often it comes.
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    for _ in range(2):
        with pytest.raises(Unauthorized):
            verifier.verify(forged)

    # A remembered token that has since expired is refused and forgotten.
    expired = jwt.encode(
        {
            "iss": settings.jwt_issuer,
            "aud": settings.jwt_audience,
            "sub": str(user),
            "role": "customer",
            "sid": str(session),
            "jti": "j",
            "iat": datetime.now(UTC) - timedelta(seconds=10),
            "exp": datetime.now(UTC) + timedelta(seconds=1),
        },
        settings.jwt_secret.get_secret_value() if settings.jwt_secret else "",
        algorithm="HS256",
    )
    claims = verifier.verify(expired)
    object.__setattr__(claims, "expires_at", datetime.now(UTC) - timedelta(seconds=60))
    with pytest.raises(Unauthorized, match="expired"):
        verifier.verify(expired)

    # Bounded: the least recently used token is dropped first.
    others = [
        issue_access_token(settings, user_id=uuid.uuid4(), role=Role.staff, session_id=session)[0]
        for _ in range(3)
    ]
    for other in others:
        verifier.verify(other)
    assert len(verifier._verified) == 2
