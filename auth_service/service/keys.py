"""Signing keys for access tokens: loading, development fallback, JWK set, minting."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from jwt.algorithms import OKPAlgorithm, RSAAlgorithm

from auth_service.settings import AuthSettings
from common.ids import new_id
from common.logging import get_logger

__all__ = ["KeyConfigError", "KeyRing", "SigningKey"]

log = get_logger(__name__)

_PEM_BLOCK = re.compile(
    r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----.+?-----END (?:[A-Z]+ )?PRIVATE KEY-----",
    re.DOTALL,
)
_MIN_RSA_BITS = 2048

PrivateKey = ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey


class KeyConfigError(ValueError):
    """The configured signing keys are missing or unusable."""


@dataclass(frozen=True)
class SigningKey:
    kid: str
    algorithm: str
    private_key: PrivateKey

    def public_jwk(self) -> dict[str, Any]:
        public = self.private_key.public_key()
        if isinstance(public, ed25519.Ed25519PublicKey):
            jwk: dict[str, Any] = OKPAlgorithm.to_jwk(public, as_dict=True)
        else:
            jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
        return {**jwk, "kid": self.kid, "alg": self.algorithm, "use": "sig"}


def _thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint: stable across restarts and replicas holding the same key."""
    required = ("crv", "kty", "x") if jwk["kty"] == "OKP" else ("e", "kty", "n")
    canonical = json.dumps({k: jwk[k] for k in required}, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _signing_key(private_key: object) -> SigningKey:
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        algorithm = "EdDSA"
        jwk = OKPAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    elif isinstance(private_key, rsa.RSAPrivateKey):
        if private_key.key_size < _MIN_RSA_BITS:
            raise KeyConfigError(f"RSA signing keys need at least {_MIN_RSA_BITS} bits")
        algorithm = "RS256"
        jwk = RSAAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    else:
        raise KeyConfigError("signing keys must be Ed25519 or RSA private keys")
    return SigningKey(kid=_thumbprint(jwk), algorithm=algorithm, private_key=private_key)


def _parse_pems(text: str) -> list[SigningKey]:
    blocks = _PEM_BLOCK.findall(text)
    if not blocks:
        raise KeyConfigError("no PEM private key found in the configured signing keys")
    keys: list[SigningKey] = []
    for block in blocks:
        try:
            private_key = serialization.load_pem_private_key(block.encode(), password=None)
        except ValueError as exc:
            raise KeyConfigError("a configured signing key is not a readable PEM key") from exc
        keys.append(_signing_key(private_key))
    return keys


class KeyRing:
    """The active signing key plus every key still published for verification."""

    def __init__(self, keys: list[SigningKey]) -> None:
        if not keys:
            raise KeyConfigError("at least one signing key is required")
        self._keys = keys

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> KeyRing:
        text = ""
        if settings.signing_keys is not None:
            text += settings.signing_keys.get_secret_value() + "\n"
        if settings.signing_key_file is not None:
            try:
                text += settings.signing_key_file.read_text()
            except OSError as exc:
                raise KeyConfigError(f"cannot read signing key file: {exc.strerror}") from exc
        if text.strip():
            return cls(_parse_pems(text))
        if settings.environment == "production":
            raise KeyConfigError(
                "no signing key configured; refusing to generate one in production"
            )
        log.warning(
            "signing_key_generated", reason="no key configured", environment=settings.environment
        )
        return cls([_signing_key(ed25519.Ed25519PrivateKey.generate())])

    @property
    def active(self) -> SigningKey:
        return self._keys[0]

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.public_jwk() for key in self._keys]}

    def mint_access_token(
        self,
        *,
        user_id: str,
        username: str,
        issuer: str,
        audience: str,
        now: datetime,
        ttl: timedelta,
    ) -> str:
        key = self.active
        claims = {
            "sub": user_id,
            "username": username,
            "iss": issuer,
            "aud": audience,
            "iat": int(now.timestamp()),
            "exp": int((now + ttl).timestamp()),
            "jti": new_id(),
        }
        return jwt.encode(
            claims,
            key.private_key,
            algorithm=key.algorithm,
            headers={"kid": key.kid, "typ": "at+jwt"},
        )
