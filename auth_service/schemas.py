"""Request and response bodies of auth_service (the shapes of ``api.md``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, StringConstraints

from common.text import check_storable
from common.time import Timestamp

__all__ = [
    "DeleteAccount",
    "LoginRequest",
    "Password",
    "PasswordForm",
    "PasswordResetConfirm",
    "PasswordResetRequest",
    "ProfileUpdate",
    "RefreshRequest",
    "RegisterRequest",
    "TokenPair",
    "UserPrivate",
    "UserPublic",
    "VerifyEmailRequest",
]

MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_BYTES = 72  # bcrypt's limit; longer input would be silently truncated or refused


def _check_password(value: str) -> str:
    if len(value) < MIN_PASSWORD_CHARS:
        raise ValueError(f"must be at least {MIN_PASSWORD_CHARS} characters")
    if len(value.encode()) > MAX_PASSWORD_BYTES:
        raise ValueError(f"must be at most {MAX_PASSWORD_BYTES} bytes in UTF-8")
    return value


# Every free-text field also passes check_storable (no NUL, no lone surrogate): PostgreSQL and
# bcrypt would fail on them with a 500.
Password = Annotated[
    str, Field(max_length=1024), AfterValidator(_check_password), AfterValidator(check_storable)
]
Username = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_]{3,30}$")]
DisplayName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=50),
    AfterValidator(check_storable),
]
Bio = Annotated[str, StringConstraints(max_length=300), AfterValidator(check_storable)]
# Opaque tokens we issued are 43 characters; anything much longer is not one of ours.
OpaqueToken = Annotated[
    str, StringConstraints(min_length=1, max_length=256), AfterValidator(check_storable)
]
LoginName = Annotated[
    str, StringConstraints(min_length=1, max_length=320), AfterValidator(check_storable)
]
# Not validated for length: a wrong password of any size is the same generic 401.
AnyPassword = Annotated[
    str, StringConstraints(min_length=1, max_length=1024), AfterValidator(check_storable)
]


class Input(BaseModel):
    # Unknown fields are an error: no client can set server-owned fields.
    model_config = ConfigDict(extra="forbid")


class RegisterRequest(Input):
    username: Username
    email: Annotated[EmailStr, Field(max_length=320)]
    password: Password
    display_name: DisplayName | None = None


class LoginRequest(Input):
    login: LoginName
    password: AnyPassword


class PasswordForm(BaseModel):
    """The OAuth2 password grant's form (RFC 6749, 4.3.2), for the /docs Authorize button.

    ``grant_type``, ``scope`` and client credentials are ignored: there is one grant and no
    scopes. The same field types as ``LoginRequest``, so the form is checked the same way.
    """

    username: LoginName
    password: AnyPassword


class RefreshRequest(Input):
    refresh_token: OpaqueToken


class VerifyEmailRequest(Input):
    token: OpaqueToken


class PasswordResetRequest(Input):
    email: Annotated[EmailStr, Field(max_length=320)]


class PasswordResetConfirm(Input):
    token: OpaqueToken
    new_password: Password


class ProfileUpdate(Input):
    display_name: DisplayName | None = None
    bio: Bio | None = None


class DeleteAccount(Input):
    password: AnyPassword


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105
    expires_in: int


class UserPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    username: str
    display_name: str
    bio: str
    created_at: Timestamp


class UserPrivate(UserPublic):
    """Only ever returned to the user themself."""

    email: str
    email_verified: bool
