"""JWT access-token verification against a JWK set, and the FastAPI user dependencies."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, Protocol, cast

import httpx
import jwt
import structlog
from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from pydantic import BaseModel, ConfigDict, ValidationError

from common.errors import ServiceUnavailable, Unauthorized
from common.logging import get_logger

__all__ = [
    "ACCESS_TOKEN_TYPE",
    "AccessClaims",
    "CurrentUser",
    "DeletedUsers",
    "DeletedUsersLoader",
    "JWKSClient",
    "KeySource",
    "OptionalUser",
    "StaticKeySource",
    "TokenVerifier",
    "UnknownKeyError",
    "current_user",
    "deny_list_running",
    "optional_user",
]

ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 (a token type, not a secret)
# RFC 9068 allows the media-type spelling as well.
_ACCEPTED_TYPES = frozenset({"at+jwt", "application/at+jwt"})
_SUPPORTED_ALGORITHMS = frozenset({"EdDSA", "RS256"})
_MAX_TOKEN_LENGTH = 8192
_REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub", "jti"]

log = get_logger(__name__)


class AccessClaims(BaseModel):
    """The verified claims of an access token."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    sub: str
    username: str
    jti: str
    iat: int
    exp: int


class UnknownKeyError(LookupError):
    """No key with this ``kid`` in the key set."""


class KeySource(Protocol):
    async def get_key(self, kid: str) -> jwt.PyJWK: ...


def _parse_jwks(jwks: Mapping[str, Any]) -> dict[str, jwt.PyJWK]:
    """Usable keys of a JWK set by ``kid``; keys without a kid or of another kind are skipped."""
    keys: dict[str, jwt.PyJWK] = {}
    raw_keys = jwks.get("keys")
    if not isinstance(raw_keys, list):
        raise ValueError("not a JWK set")
    for raw in raw_keys:
        if not isinstance(raw, dict) or not isinstance(raw.get("kid"), str):
            continue
        if raw.get("use", "sig") != "sig":
            continue
        try:
            key = jwt.PyJWK(raw)
        except (jwt.PyJWKError, jwt.InvalidKeyError):
            continue
        if key.algorithm_name in _SUPPORTED_ALGORITHMS:
            keys[raw["kid"]] = key
    return keys


class StaticKeySource:
    """Keys from a JWK set held in memory (auth_service verifies with its own keys)."""

    def __init__(self, jwks: Mapping[str, Any]) -> None:
        self._keys = _parse_jwks(jwks)

    async def get_key(self, kid: str) -> jwt.PyJWK:
        try:
            return self._keys[kid]
        except KeyError:
            raise UnknownKeyError(kid) from None


class JWKSClient:
    """Fetches a JWK set over HTTP and caches the parsed keys.

    The set is refreshed after ``ttl_s``, and early when a token names an unknown ``kid``
    (key rotation), but at most once per ``min_refetch_interval_s`` so a flood of tokens with
    made-up kids cannot turn into a flood of requests to auth_service. When a refresh fails the
    keys already known keep working.
    """

    def __init__(
        self,
        url: str,
        *,
        http: httpx.AsyncClient | None = None,
        ttl_s: float = 300,
        min_refetch_interval_s: float = 5.0,
        timeout_s: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._clock = clock
        self.ttl_s = ttl_s
        self.min_refetch_interval_s = min_refetch_interval_s
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(timeout=timeout_s)
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()
        self.fetch_count = 0

    async def get_key(self, kid: str) -> jwt.PyJWK:
        key = self._keys.get(kid)
        if key is not None and not self._stale():
            return key
        async with self._lock:
            # Another task may have refreshed while this one waited.
            key = self._keys.get(kid)
            if key is None or self._stale():
                await self._refresh_if_allowed()
                key = self._keys.get(kid)
        if key is None:
            raise UnknownKeyError(kid)
        return key

    def _stale(self) -> bool:
        return self._fetched_at is None or self._clock() - self._fetched_at >= self.ttl_s

    async def _refresh_if_allowed(self) -> None:
        now = self._clock()
        if (
            self._attempted_at is not None
            and now - self._attempted_at < self.min_refetch_interval_s
        ):
            if self._fetched_at is None:
                raise ServiceUnavailable("Token keys are unavailable", dependency="jwks")
            return
        self._attempted_at = now
        try:
            await self.refresh()
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("jwks_fetch_failed", url=self.url, error=type(exc).__name__)
            if self._fetched_at is None:
                raise ServiceUnavailable("Token keys are unavailable", dependency="jwks") from exc

    async def refresh(self) -> None:
        """Fetch the key set now."""
        self.fetch_count += 1
        response = await self._http.get(self.url, headers={"Accept": "application/json"})
        response.raise_for_status()
        self._keys = _parse_jwks(response.json())
        self._fetched_at = self._clock()
        log.info("jwks_fetched", url=self.url, kids=sorted(self._keys))

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()


class TokenVerifier:
    """Verifies access tokens: signature, algorithm, ``typ``, ``kid``, issuer, audience, times."""

    def __init__(
        self,
        keys: KeySource,
        *,
        issuer: str,
        audience: str,
        algorithms: Sequence[str] = ("EdDSA", "RS256"),
        leeway_s: float = 30,
    ) -> None:
        unsupported = set(algorithms) - _SUPPORTED_ALGORITHMS
        if unsupported:
            raise ValueError(f"unsupported JWT algorithms: {sorted(unsupported)}")
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.algorithms = frozenset(algorithms)
        self.leeway_s = leeway_s
        self._jwt = jwt.PyJWT(
            options={"require": _REQUIRED_CLAIMS, "verify_signature": True, "strict_aud": True}
        )

    async def verify(self, token: str) -> AccessClaims:
        """The token's claims, or ``Unauthorized`` (401) for anything wrong with it."""
        if len(token) > _MAX_TOKEN_LENGTH:
            raise Unauthorized("Invalid token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            # Not only DecodeError (bad base64 or JSON): PyJWT also checks header members as
            # it reads them (a kid that is not a string, crit) and raises the base class.
            raise Unauthorized("Invalid token") from None
        alg = header.get("alg")
        # The allow-list is checked before any key is used: "none" and HMAC (signed with the
        # public key as the secret) never reach signature verification.
        if alg not in self.algorithms:
            raise Unauthorized("Invalid token")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in _ACCEPTED_TYPES:
            raise Unauthorized("Invalid token")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthorized("Invalid token")
        try:
            key = await self.keys.get_key(kid)
        except UnknownKeyError:
            raise Unauthorized("Invalid token") from None
        if key.algorithm_name != alg:
            raise Unauthorized("Invalid token")
        try:
            payload = self._jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("Token expired") from None
        except jwt.InvalidTokenError:
            raise Unauthorized("Invalid token") from None
        try:
            return AccessClaims.model_validate(payload)
        except ValidationError:
            raise Unauthorized("Invalid token") from None


# -- deny-list of deleted accounts ------------------------------------------------------------

# (user id, when the account was deleted) of every deletion at or after the given time.
DeletedUsersLoader = Callable[[datetime], Awaitable[Iterable[tuple[str, datetime]]]]


class DeletedUsers:
    """Deleted accounts whose access tokens may still be unexpired: those tokens get 401.

    A deleted account cannot sign in again and its id is never reused, so an entry needs to
    live only as long as the longest access token (``keep_s``). The hot path is a dict lookup;
    the set is reloaded every ``refresh_interval_s`` from the service's own store, which its
    user.deleted consumer keeps (a tombstone), so every replica learns a deletion within one
    interval of its own consumer, wherever that consumer runs. A failed reload keeps the last
    set (logged): the store being down must not lock everyone out.
    """

    def __init__(
        self,
        load: DeletedUsersLoader,
        *,
        keep_s: float,
        refresh_interval_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._load = load
        self.keep_s = keep_s
        self.refresh_interval_s = refresh_interval_s
        self._clock = clock
        self._until: dict[str, float] = {}
        self.loaded = False

    def __contains__(self, user_id: object) -> bool:
        until = self._until.get(user_id) if isinstance(user_id, str) else None
        return until is not None and until > self._clock()

    def __len__(self) -> int:
        return len(self._until)

    def add(self, user_id: str, deleted_at: datetime) -> None:
        """Deny now (the consumer of this process calls it, not waiting for the reload)."""
        self._until[user_id] = deleted_at.timestamp() + self.keep_s

    async def refresh(self) -> None:
        now = self._clock()
        since = datetime.fromtimestamp(now - self.keep_s).astimezone()
        entries = await self._load(since)
        until = {user_id: at.timestamp() + self.keep_s for user_id, at in entries}
        # Entries added by the local consumer since the load began stay.
        for user_id, at in self._until.items():
            if at > now and until.get(user_id, 0.0) < at:
                until[user_id] = at
        self._until = until
        self.loaded = True

    async def run(self) -> None:
        """Reload until cancelled."""
        while True:
            try:
                await self.refresh()
            except Exception as exc:  # any store failure: keep the last set
                log.warning("deny_list_refresh_failed", error=type(exc).__name__)
            # A cancellation that lands while the store client opens its first connection can
            # be swallowed inside the client (seen with redis-py 7: the task stays
            # "cancelling" and the loop went on, so a shutdown right after start-up hung until
            # its timeout). Honour it here.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise asyncio.CancelledError
            await asyncio.sleep(self.refresh_interval_s)

    def check(self, claims: AccessClaims) -> None:
        if claims.sub in self:
            raise Unauthorized("This account has been deleted")


@contextlib.asynccontextmanager
async def deny_list_running(app_state: Any, deny_list: DeletedUsers) -> AsyncIterator[None]:
    """Attach ``deny_list`` to the app's token checks and reload it while the context is open."""
    app_state.deleted_users = deny_list
    task = asyncio.create_task(deny_list.run(), name="deny-list-refresh")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# OAuth2 password flow in the OpenAPI document, so the /docs "Authorize" button can log in
# through auth_service's token endpoint; on the wire it is a plain bearer token.
TOKEN_URL = "/api/v1/auth/token"  # noqa: S105 (a path, not a secret)
_bearer = OAuth2PasswordBearer(tokenUrl=TOKEN_URL, auto_error=False)


def _verifier(request: Request) -> TokenVerifier:
    verifier = getattr(request.app.state, "token_verifier", None)
    if verifier is None:
        raise RuntimeError("app.state.token_verifier is not set")
    return cast(TokenVerifier, verifier)


async def _verify(request: Request, token: str) -> AccessClaims:
    claims = await _verifier(request).verify(token)
    _check_deny_list(request, claims)
    structlog.contextvars.bind_contextvars(user_id=claims.sub)
    return claims


def _check_deny_list(request: Request, claims: AccessClaims) -> None:
    deny_list = getattr(request.app.state, "deleted_users", None)
    if deny_list is not None:
        cast(DeletedUsers, deny_list).check(claims)


async def current_user(
    request: Request,
    token: Annotated[str | None, Depends(_bearer)],
) -> AccessClaims:
    """The authenticated user; 401 with ``WWW-Authenticate: Bearer`` otherwise."""
    if not token:
        raise Unauthorized("Not authenticated")
    return await _verify(request, token)


async def optional_user(
    request: Request,
    token: Annotated[str | None, Depends(_bearer)],
) -> AccessClaims | None:
    """The user when a token is sent, ``None`` for anonymous requests, 401 for a bad token."""
    if not token:
        if "authorization" in request.headers:
            raise Unauthorized("Unsupported authorization scheme")
        return None
    return await _verify(request, token)


CurrentUser = Annotated[AccessClaims, Depends(current_user)]
OptionalUser = Annotated[AccessClaims | None, Depends(optional_user)]
