"""Access tokens for tests: a signing key, its JWK set, and a minting helper that can also
produce the broken tokens security tests need."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from jwt.algorithms import OKPAlgorithm, RSAAlgorithm

from common.security import StaticKeySource, TokenVerifier

DEFAULT_ISSUER = "murmur-auth"
DEFAULT_AUDIENCE = "murmur"


class TokenFactory:
    """An Ed25519 (or RSA) signing key with a ``kid``.

    ``mint("user-id", "alice")`` gives a valid access token; keyword overrides change claims
    (``None`` removes a claim), ``headers=`` changes the JOSE header (``None`` removes a member)
    and ``expired=True`` gives a token that expired an hour ago.
    """

    def __init__(
        self,
        *,
        algorithm: Literal["EdDSA", "RS256"] = "EdDSA",
        kid: str | None = None,
        issuer: str = DEFAULT_ISSUER,
        audience: str = DEFAULT_AUDIENCE,
        ttl_s: int = 900,
    ) -> None:
        self.algorithm = algorithm
        self.kid = kid or f"test-{uuid.uuid4().hex[:12]}"
        self.issuer = issuer
        self.audience = audience
        self.ttl_s = ttl_s
        self.private_key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
        public_jwk: dict[str, Any]
        if algorithm == "EdDSA":
            self.private_key = ed25519.Ed25519PrivateKey.generate()
            public_jwk = OKPAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        else:
            self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            public_jwk = RSAAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        self.public_jwk: dict[str, Any] = {
            **public_jwk,
            "kid": self.kid,
            "alg": algorithm,
            "use": "sig",
        }

    @property
    def jwks(self) -> dict[str, Any]:
        """The public JWK set (what ``/.well-known/jwks.json`` serves)."""
        return {"keys": [dict(self.public_jwk)]}

    def verifier(self, issuer: str | None = None, audience: str | None = None) -> TokenVerifier:
        """A verifier trusting only this factory's key."""
        return TokenVerifier(
            StaticKeySource(self.jwks),
            issuer=issuer or self.issuer,
            audience=audience or self.audience,
        )

    def claims(self, sub: str, username: str, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": sub,
            "username": username,
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "exp": now + self.ttl_s,
            "jti": uuid.uuid4().hex,
        }
        for name, value in overrides.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        return claims

    def mint(
        self,
        sub: str,
        username: str = "user",
        *,
        headers: dict[str, Any] | None = None,
        expired: bool = False,
        **overrides: Any,
    ) -> str:
        """An access token for ``sub``; see the class docstring for the ways to break it."""
        if expired:
            now = int(time.time())
            overrides.setdefault("iat", now - 7200)
            overrides.setdefault("exp", now - 3600)
        header: dict[str, Any] = {"typ": "at+jwt", "kid": self.kid}
        for name, value in (headers or {}).items():
            if value is None:
                header.pop(name, None)
            else:
                header[name] = value
        return self.sign_raw(header, self.claims(sub, username, **overrides))

    def sign_raw(
        self,
        header: dict[str, Any],
        claims: dict[str, Any],
        *,
        alg: str | None = None,
        secret: bytes | None = None,
    ) -> str:
        """Sign exactly ``header`` and ``claims`` (no defaults added).

        ``alg`` defaults to the factory's algorithm and key; ``alg="none"`` gives an unsigned
        token; an HMAC ``alg`` signs with ``secret`` (e.g. the public key bytes, to forge the
        classic algorithm-confusion token, which PyJWT itself refuses to produce).
        """
        alg = alg or self.algorithm
        signing_input = f"{_b64(_json({**header, 'alg': alg}))}.{_b64(_json(claims))}".encode(
            "ascii"
        )
        if alg == "none":
            signature = b""
        elif alg.startswith("HS"):
            digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
            signature = hmac.new(secret or b"", signing_input, digest[alg]).digest()
        else:
            algorithm = jwt.get_algorithm_by_name(alg)
            signature = algorithm.sign(signing_input, self.private_key)
        return f"{signing_input.decode('ascii')}.{_b64(signature)}"

    def public_key_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def _json(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class User:
    """A test user: its id, its username and an access token minted for it."""

    id: str
    username: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}
