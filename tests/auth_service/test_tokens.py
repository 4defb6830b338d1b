"""Access and refresh tokens: shape, every kind of forgery rejected, rotation and reuse."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from fastapi import FastAPI

from auth_service.app import create_app
from auth_service.service.keys import KeyConfigError, KeyRing
from auth_service.settings import AuthSettings
from common.time import utcnow
from tests.auth_service.conftest import (
    PASSWORD,
    bearer,
    login,
    pem_of,
    register,
    running,
)
from tests.support.jwt import TokenFactory


async def test_access_token_shape_and_jwks(client: httpx.AsyncClient, signing_kid: str) -> None:
    user = await register(client)
    tokens = await login(client, user["username"])
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == 900
    header = jwt.get_unverified_header(tokens["access_token"])
    assert header == {"alg": "EdDSA", "kid": signing_kid, "typ": "at+jwt"}
    jwks = (await client.get("/.well-known/jwks.json")).json()
    assert [key["kid"] for key in jwks["keys"]] == [signing_kid]
    assert all("d" not in key for key in jwks["keys"])  # public halves only
    key = jwt.PyJWK(jwks["keys"][0])
    claims = jwt.decode(
        tokens["access_token"], key, algorithms=["EdDSA"], audience="murmur", issuer="murmur-auth"
    )
    assert claims["sub"] == user["id"]
    assert claims["username"] == user["username"]
    assert claims["exp"] - claims["iat"] == 900
    assert set(claims) == {"sub", "username", "iss", "aud", "iat", "exp", "jti"}
    me = await client.get("/api/v1/me", headers=bearer(tokens))
    assert me.status_code == 200 and me.json()["id"] == user["id"]


async def test_forged_and_misused_tokens_are_401(
    client: httpx.AsyncClient, signing_factory: TokenFactory, signing_kid: str
) -> None:
    user = await register(client)
    tokens = await login(client, user["username"])
    sub, name = user["id"], user["username"]
    claims = signing_factory.claims(sub, name)
    header = {"typ": "at+jwt", "kid": signing_kid}
    other = TokenFactory(kid=signing_kid)  # a stranger's key claiming our kid
    forged = {
        "alg none": signing_factory.sign_raw(header, claims, alg="none"),
        "HS256 with the public key": signing_factory.sign_raw(
            header, claims, alg="HS256", secret=signing_factory.public_key_pem()
        ),
        "expired": signing_factory.mint(sub, name, expired=True),
        "wrong aud": signing_factory.mint(sub, name, aud="another-api"),
        "wrong iss": signing_factory.mint(sub, name, iss="someone-else"),
        "wrong typ": signing_factory.mint(sub, name, headers={"typ": "JWT"}),
        "unknown kid": signing_factory.mint(sub, name, headers={"kid": "nope"}),
        "signed by another key": other.mint(sub, name),
        "refresh token as access token": tokens["refresh_token"],
        "garbage": "not.a.jwt",
    }
    # The control: the same factory and key do produce an accepted token.
    ok = await client.get(
        "/api/v1/me", headers={"Authorization": f"Bearer {signing_factory.mint(sub, name)}"}
    )
    assert ok.status_code == 200
    for what, token in forged.items():
        response = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, what
        assert response.headers["www-authenticate"].startswith("Bearer"), what
        assert response.headers["content-type"] == "application/problem+json"
    missing = await client.get("/api/v1/me")
    assert missing.status_code == 401


async def test_refresh_rotates_and_reuse_revokes_the_family(client: httpx.AsyncClient) -> None:
    user = await register(client)
    first = await login(client, user["username"])
    other_session = await login(client, user["email"])

    second = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert second.status_code == 200
    rotated = second.json()
    assert rotated["refresh_token"] != first["refresh_token"]
    assert (await client.get("/api/v1/me", headers=bearer(rotated))).status_code == 200

    # The spent token comes back: refused, and the token it was rotated into dies with it.
    reuse = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert reuse.status_code == 401
    after = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]}
    )
    assert after.status_code == 401
    # Another login (another family) is untouched.
    untouched = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": other_session["refresh_token"]}
    )
    assert untouched.status_code == 200


async def test_unknown_refresh_token_is_401(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/auth/refresh", json={"refresh_token": "x" * 43})
    assert response.status_code == 401


async def test_logout_revokes(client: httpx.AsyncClient) -> None:
    user = await register(client)
    tokens = await login(client, user["username"])
    response = await client.post(
        "/api/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]}
    )
    assert response.status_code == 204
    again = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert again.status_code == 401
    # Logging out with an unknown token reveals nothing.
    unknown = await client.post("/api/v1/auth/logout", json={"refresh_token": "y" * 43})
    assert unknown.status_code == 204


async def test_key_rotation_publishes_every_key(
    auth_settings: Callable[..., AuthSettings], signing_factory: TokenFactory
) -> None:
    new_key = TokenFactory()
    # The new key first (it signs), the previous one after it (still published).
    settings = auth_settings(signing_keys=pem_of(new_key) + "\n" + pem_of(signing_factory))
    app = create_app(settings)
    async with running(app) as client:
        keys: KeyRing = app.state.keys
        jwks = (await client.get("/.well-known/jwks.json")).json()
        kids = [key["kid"] for key in jwks["keys"]]
        assert len(kids) == 2 and kids[0] == keys.active.kid
        user = await register(client)
        tokens = await login(client, user["username"])
        assert jwt.get_unverified_header(tokens["access_token"])["kid"] == kids[0]
        # A token signed before the rotation, by the previous key, still verifies.
        signing_factory.kid = kids[1]
        old = signing_factory.mint(user["id"], user["username"])
        response = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {old}"})
        assert response.status_code == 200


async def test_rsa_keys_sign_rs256(
    auth_settings: Callable[..., AuthSettings],
) -> None:
    rsa_key = TokenFactory(algorithm="RS256")
    app = create_app(auth_settings(signing_keys=pem_of(rsa_key)))
    async with running(app) as client:
        user = await register(client)
        tokens = await login(client, user["username"])
        assert jwt.get_unverified_header(tokens["access_token"])["alg"] == "RS256"
        assert (await client.get("/api/v1/me", headers=bearer(tokens))).status_code == 200


def test_keys_from_a_file_and_development_fallback(
    tmp_path: Path, signing_factory: TokenFactory
) -> None:
    key_file = tmp_path / "keys.pem"
    key_file.write_text(pem_of(signing_factory))
    from_file = KeyRing.from_settings(AuthSettings(environment="test", signing_key_file=key_file))
    assert len(from_file.jwks()["keys"]) == 1
    generated = KeyRing.from_settings(AuthSettings(environment="development"))
    assert isinstance(generated.active.private_key, ed25519.Ed25519PrivateKey)
    with pytest.raises(KeyConfigError):
        KeyRing.from_settings(AuthSettings(environment="test", signing_keys="not a pem"))


def test_production_refuses_to_start_without_a_key() -> None:
    with pytest.raises(ValueError, match="signing key"):
        AuthSettings(
            environment="production",
            amqp_url="amqp://murmur:s3cret@rabbit:5672/",
            database_url="postgresql+asyncpg://auth:s3cret@db/auth",
        )
    # Even if the settings check were bypassed, the key ring itself refuses.
    settings = AuthSettings.model_construct(
        environment="production", signing_keys=None, signing_key_file=None
    )
    with pytest.raises(KeyConfigError):
        KeyRing.from_settings(settings)


async def test_access_token_lifetime_is_enforced(
    auth_app: FastAPI, client: httpx.AsyncClient
) -> None:
    user = await register(client)
    keys: KeyRing = auth_app.state.keys
    stale = keys.mint_access_token(
        user_id=user["id"],
        username=user["username"],
        issuer="murmur-auth",
        audience="murmur",
        now=utcnow() - timedelta(minutes=16),
        ttl=timedelta(minutes=15),
    )
    response = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {stale}"})
    assert response.status_code == 401
    assert time.time() > jwt.decode(stale, options={"verify_signature": False})["exp"]
    assert PASSWORD not in response.text
