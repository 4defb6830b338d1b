"""Access-token verification, the JWKS client and the user dependencies."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from common.app import create_app
from common.errors import ServiceUnavailable, Unauthorized
from common.security import (
    CurrentUser,
    JWKSClient,
    OptionalUser,
    StaticKeySource,
    TokenVerifier,
)
from common.settings import ServiceSettings
from tests.support.jwt import TokenFactory
from tests.support.server import serve

ISSUER = "murmur-auth"
AUDIENCE = "murmur"


@pytest.fixture(scope="module")
def factory() -> TokenFactory:
    return TokenFactory()


@pytest.fixture(scope="module")
def verifier(factory: TokenFactory) -> TokenVerifier:
    return factory.verifier(ISSUER, AUDIENCE)


async def assert_rejected(verifier: TokenVerifier, token: str) -> Unauthorized:
    with pytest.raises(Unauthorized) as info:
        await verifier.verify(token)
    assert info.value.headers["WWW-Authenticate"].startswith("Bearer")
    return info.value


async def test_accepts_good_eddsa_token(factory: TokenFactory, verifier: TokenVerifier) -> None:
    claims = await verifier.verify(factory.mint("user-1", "alice"))
    assert claims.sub == "user-1"
    assert claims.username == "alice"
    assert claims.exp > claims.iat


async def test_accepts_good_rs256_token() -> None:
    rsa_factory = TokenFactory(algorithm="RS256")
    claims = await rsa_factory.verifier().verify(rsa_factory.mint("user-2", "bob"))
    assert (claims.sub, claims.username) == ("user-2", "bob")


async def test_rejects_alg_none(factory: TokenFactory, verifier: TokenVerifier) -> None:
    header = {"typ": "at+jwt", "kid": factory.kid}
    token = factory.sign_raw(header, factory.claims("user-1", "alice"), alg="none")
    assert token.endswith(".")
    await assert_rejected(verifier, token)


@pytest.mark.parametrize("key_format", ["pem", "raw"])
async def test_rejects_hs256_signed_with_public_key(
    factory: TokenFactory, verifier: TokenVerifier, key_format: str
) -> None:
    public = factory.private_key.public_key()
    secret = (
        factory.public_key_pem()
        if key_format == "pem"
        else public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    header = {"typ": "at+jwt", "kid": factory.kid}
    token = factory.sign_raw(header, factory.claims("user-1", "alice"), alg="HS256", secret=secret)
    await assert_rejected(verifier, token)


async def test_rejects_expired_token(factory: TokenFactory, verifier: TokenVerifier) -> None:
    error = await assert_rejected(verifier, factory.mint("user-1", "alice", expired=True))
    assert error.detail == "Token expired"


async def test_small_clock_skew_is_tolerated(
    factory: TokenFactory, verifier: TokenVerifier
) -> None:
    now = int(time.time())
    await verifier.verify(factory.mint("u", "alice", exp=now - 5, iat=now - 900))
    await verifier.verify(factory.mint("u", "alice", iat=now + 5))
    await assert_rejected(verifier, factory.mint("u", "alice", exp=now - 120, iat=now - 900))
    await assert_rejected(verifier, factory.mint("u", "alice", iat=now + 600))


async def test_rejects_wrong_audience(factory: TokenFactory, verifier: TokenVerifier) -> None:
    await assert_rejected(verifier, factory.mint("user-1", "alice", aud="other-service"))
    await assert_rejected(verifier, factory.mint("user-1", "alice", aud=["other", "more"]))


async def test_rejects_wrong_issuer(factory: TokenFactory, verifier: TokenVerifier) -> None:
    await assert_rejected(verifier, factory.mint("user-1", "alice", iss="evil-auth"))


@pytest.mark.parametrize("typ", ["JWT", "refresh+jwt", "at+jwt+refresh", None])
async def test_rejects_wrong_or_missing_typ(
    factory: TokenFactory, verifier: TokenVerifier, typ: str | None
) -> None:
    header: dict[str, Any] = {"kid": factory.kid}
    if typ is not None:
        header["typ"] = typ
    token = factory.sign_raw(header, factory.claims("user-1", "alice"))
    await assert_rejected(verifier, token)


async def test_accepts_media_type_spelling_of_typ(
    factory: TokenFactory, verifier: TokenVerifier
) -> None:
    token = factory.mint("user-1", "alice", headers={"typ": "application/at+jwt"})
    assert (await verifier.verify(token)).sub == "user-1"


async def test_rejects_missing_kid(factory: TokenFactory, verifier: TokenVerifier) -> None:
    await assert_rejected(verifier, factory.mint("user-1", "alice", headers={"kid": None}))


@pytest.mark.parametrize("claim", ["sub", "username", "jti", "exp", "iat", "iss", "aud"])
async def test_rejects_missing_claim(
    factory: TokenFactory, verifier: TokenVerifier, claim: str
) -> None:
    claims = factory.claims("user-1", "alice")
    del claims[claim]
    token = factory.sign_raw({"typ": "at+jwt", "kid": factory.kid}, claims)
    await assert_rejected(verifier, token)


async def test_rejects_forged_and_garbage_tokens(
    factory: TokenFactory, verifier: TokenVerifier
) -> None:
    impostor = TokenFactory(kid=factory.kid)  # same kid, different key
    await assert_rejected(verifier, impostor.mint("user-1", "alice"))
    header, payload, signature = factory.mint("user-1", "alice").split(".")
    other_payload = factory.mint("admin", "root").split(".")[1]
    await assert_rejected(verifier, f"{header}.{other_payload}.{signature}")
    for garbage in ["", "abc", "a.b.c", "x" * 10_000, f"{header}.{payload}"]:
        await assert_rejected(verifier, garbage)


async def test_rejects_alg_that_does_not_match_the_key() -> None:
    rsa_factory = TokenFactory(algorithm="RS256", kid="shared")
    ed_factory = TokenFactory(kid="shared")
    verifier = TokenVerifier(StaticKeySource(rsa_factory.jwks), issuer=ISSUER, audience=AUDIENCE)
    await assert_rejected(verifier, ed_factory.mint("user-1", "alice"))


async def test_algorithm_outside_the_allow_list_is_rejected(factory: TokenFactory) -> None:
    rs256_only = TokenVerifier(
        StaticKeySource(factory.jwks), issuer=ISSUER, audience=AUDIENCE, algorithms=["RS256"]
    )
    await assert_rejected(rs256_only, factory.mint("user-1", "alice"))


def test_verifier_refuses_unsafe_algorithm_lists(factory: TokenFactory) -> None:
    for algorithms in (["HS256"], ["none"], ["EdDSA", "HS256"]):
        with pytest.raises(ValueError):
            TokenVerifier(
                StaticKeySource(factory.jwks),
                issuer=ISSUER,
                audience=AUDIENCE,
                algorithms=algorithms,
            )


async def test_verification_is_fast(factory: TokenFactory, verifier: TokenVerifier) -> None:
    token = factory.mint("user-1", "alice")
    start = time.perf_counter()
    for _ in range(500):
        await verifier.verify(token)
    # EdDSA verification takes well under a millisecond: this bound catches per-call key
    # parsing or network fetches, not noise.
    assert time.perf_counter() - start < 2.5


class JWKSRecorder:
    """A JWKS endpoint for httpx.MockTransport that counts requests."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        self.jwks = jwks
        self.requests = 0
        self.fail = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if self.fail:
            return httpx.Response(503)
        return httpx.Response(200, json=self.jwks)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def mock_client(recorder: JWKSRecorder, clock: FakeClock | None = None, **kw: Any) -> JWKSClient:
    http = httpx.AsyncClient(transport=httpx.MockTransport(recorder))
    return JWKSClient(
        "http://auth.test/.well-known/jwks.json", http=http, clock=clock or FakeClock(), **kw
    )


async def test_jwks_client_caches_keys(factory: TokenFactory) -> None:
    recorder = JWKSRecorder(factory.jwks)
    verifier = TokenVerifier(mock_client(recorder), issuer=ISSUER, audience=AUDIENCE)
    for _ in range(20):
        await verifier.verify(factory.mint("user-1", "alice"))
    assert recorder.requests == 1


async def test_unknown_kid_refetches_then_rejects(factory: TokenFactory) -> None:
    recorder = JWKSRecorder(factory.jwks)
    clock = FakeClock()
    verifier = TokenVerifier(
        mock_client(recorder, clock, min_refetch_interval_s=5), issuer=ISSUER, audience=AUDIENCE
    )
    await verifier.verify(factory.mint("user-1", "alice"))
    stranger = TokenFactory()
    clock.now += 6
    await assert_rejected(verifier, stranger.mint("user-1", "alice"))
    assert recorder.requests == 2  # the unknown kid caused one refetch
    # Kid spraying: many tokens with made-up kids within the interval cause no more fetches.
    clock.now += 1
    sprayed = [TokenFactory(kid=f"spray-{i}").mint("u", "x") for i in range(3)]
    results = await asyncio.gather(
        *(verifier.verify(token) for token in sprayed * 10), return_exceptions=True
    )
    assert all(isinstance(r, Unauthorized) for r in results)
    assert recorder.requests == 2
    await verifier.verify(factory.mint("user-1", "alice"))
    # Once the interval has passed an unknown kid may trigger one fetch again.
    clock.now += 5
    await asyncio.gather(*(verifier.verify(t) for t in sprayed), return_exceptions=True)
    assert recorder.requests == 3


async def test_unknown_kid_right_after_a_fetch_waits_for_the_interval(
    factory: TokenFactory,
) -> None:
    recorder = JWKSRecorder(factory.jwks)
    clock = FakeClock()
    client = mock_client(recorder, clock, min_refetch_interval_s=5)
    verifier = TokenVerifier(client, issuer=ISSUER, audience=AUDIENCE)
    await verifier.verify(factory.mint("user-1", "alice"))
    rotated = TokenFactory()
    recorder.jwks = {"keys": [*factory.jwks["keys"], *rotated.jwks["keys"]]}
    await assert_rejected(verifier, rotated.mint("user-2", "bob"))
    assert recorder.requests == 1
    clock.now += 5
    assert (await verifier.verify(rotated.mint("user-2", "bob"))).sub == "user-2"
    assert recorder.requests == 2


async def test_jwks_ttl_expiry_refetches(factory: TokenFactory) -> None:
    recorder = JWKSRecorder(factory.jwks)
    clock = FakeClock()
    verifier = TokenVerifier(
        mock_client(recorder, clock, ttl_s=300), issuer=ISSUER, audience=AUDIENCE
    )
    token = factory.mint("user-1", "alice")
    await verifier.verify(token)
    clock.now += 299
    await verifier.verify(token)
    assert recorder.requests == 1
    clock.now += 2
    await verifier.verify(token)
    assert recorder.requests == 2


async def test_jwks_outage_keeps_known_keys_and_503_without_any(factory: TokenFactory) -> None:
    recorder = JWKSRecorder(factory.jwks)
    recorder.fail = True
    clock = FakeClock()
    verifier = TokenVerifier(
        mock_client(recorder, clock, ttl_s=60, min_refetch_interval_s=5),
        issuer=ISSUER,
        audience=AUDIENCE,
    )
    token = factory.mint("user-1", "alice")
    with pytest.raises(ServiceUnavailable):
        await verifier.verify(token)
    with pytest.raises(ServiceUnavailable):  # still no keys, and not refetched yet
        await verifier.verify(token)
    assert recorder.requests == 1
    recorder.fail = False
    clock.now += 5
    await verifier.verify(token)
    assert recorder.requests == 2
    # The set goes stale while auth_service is down: the known keys keep working.
    recorder.fail = True
    clock.now += 61
    await verifier.verify(token)
    assert recorder.requests == 3


async def test_jwks_client_follows_key_rotation_over_http() -> None:
    old, new = TokenFactory(), TokenFactory()
    served: dict[str, Any] = {"jwks": old.jwks, "hits": 0}

    async def jwks(_: Request) -> JSONResponse:
        served["hits"] += 1
        return JSONResponse(served["jwks"])

    app = Starlette(routes=[Route("/.well-known/jwks.json", jwks)])
    async with serve(app) as base_url:
        client = JWKSClient(f"{base_url}/.well-known/jwks.json", min_refetch_interval_s=0.2)
        verifier = TokenVerifier(client, issuer=ISSUER, audience=AUDIENCE)
        try:
            assert (await verifier.verify(old.mint("user-1", "alice"))).sub == "user-1"
            assert served["hits"] == 1
            # auth_service rotates: the new key is published, the old one withdrawn.
            served["jwks"] = new.jwks
            deadline = time.monotonic() + 5
            while True:
                try:
                    claims = await verifier.verify(new.mint("user-2", "bob"))
                    break
                except Unauthorized:
                    # Only possible if the first fetch was less than 0.2 s ago.
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.05)
            assert claims.sub == "user-2"
            assert served["hits"] == 2
            await assert_rejected(verifier, old.mint("user-1", "alice"))
        finally:
            await client.aclose()


@pytest.fixture
async def api(factory: TokenFactory) -> AsyncIterator[httpx.AsyncClient]:
    router = APIRouter()

    @router.get("/me")
    async def me(user: CurrentUser) -> dict[str, str]:
        return {"sub": user.sub, "username": user.username}

    @router.get("/maybe")
    async def maybe(user: OptionalUser) -> dict[str, str | None]:
        return {"sub": user.sub if user else None}

    app = create_app(name="security-test", settings=ServiceSettings(), routers=[router])
    app.state.token_verifier = factory.verifier(ISSUER, AUDIENCE)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_current_user_dependency(api: httpx.AsyncClient, factory: TokenFactory) -> None:
    ok = await api.get("/me", headers=bearer(factory.mint("user-1", "alice")))
    assert ok.status_code == 200
    assert ok.json() == {"sub": "user-1", "username": "alice"}
    for headers in (
        {},
        bearer("not-a-token"),
        bearer(factory.mint("user-1", "alice", expired=True)),
        {"Authorization": "Basic YWxpY2U6c2VjcmV0"},
    ):
        response = await api.get("/me", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.headers["content-type"] == "application/problem+json"


async def test_optional_user_dependency(api: httpx.AsyncClient, factory: TokenFactory) -> None:
    anonymous = await api.get("/maybe")
    assert anonymous.status_code == 200
    assert anonymous.json() == {"sub": None}
    known = await api.get("/maybe", headers=bearer(factory.mint("user-1", "alice")))
    assert known.json() == {"sub": "user-1"}
    forged = await api.get("/maybe", headers=bearer(TokenFactory().mint("user-1", "alice")))
    assert forged.status_code == 401
    assert forged.headers["www-authenticate"].startswith("Bearer")
    basic = await api.get("/maybe", headers={"Authorization": "Basic YWxpY2U6c2VjcmV0"})
    assert basic.status_code == 401
    empty = await api.get("/maybe", headers={"Authorization": "Bearer "})
    assert empty.status_code == 401


async def test_openapi_offers_the_password_flow(api: httpx.AsyncClient) -> None:
    schemes = (await api.get("/openapi.json")).json()["components"]["securitySchemes"]
    (scheme,) = schemes.values()
    assert scheme["type"] == "oauth2"
    assert scheme["flows"]["password"]["tokenUrl"] == "/api/v1/auth/token"


def _b64json(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode("ascii")


# Headers PyJWT itself refuses before any key is looked at (InvalidTokenError, not DecodeError):
# a kid that is not a string, an unknown "crit" extension, a "crit" that is not a list.
_MALFORMED_TOKENS = [
    "eyJhbGciOiJFZERTQSIsInR5cCI6ImF0K2p3dCIsImtpZCI6MTIzfQ.e30.AAAA",
    _b64json('{"alg":"EdDSA","typ":"at+jwt","kid":["k"]}') + ".e30.AAAA",
    _b64json('{"alg":"EdDSA","typ":"at+jwt","kid":{"a":1}}') + ".e30.AAAA",
    _b64json('{"alg":"EdDSA","typ":"at+jwt","kid":"k","crit":["x"]}') + ".e30.AAAA",
    _b64json('{"alg":"EdDSA","typ":"at+jwt","kid":"k","crit":1}') + ".e30.AAAA",
    _b64json('{"alg":1e999,"typ":"at+jwt","kid":"k"}') + ".e30.AAAA",
    _b64json("[1]") + ".e30.AAAA",
    "eyJhbGciOiJFZERTQSJ9.e30.AAA!",
    "....",
]


@pytest.mark.parametrize("token", _MALFORMED_TOKENS)
async def test_rejects_malformed_headers(verifier: TokenVerifier, token: str) -> None:
    await assert_rejected(verifier, token)


@pytest.mark.parametrize("token", _MALFORMED_TOKENS[:3])
async def test_malformed_token_is_401_through_the_dependencies(
    api: httpx.AsyncClient, token: str
) -> None:
    for path in ("/me", "/maybe"):
        response = await api.get(path, headers=bearer(token))
        assert response.status_code == 401, (path, response.text)
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.headers["content-type"] == "application/problem+json"
