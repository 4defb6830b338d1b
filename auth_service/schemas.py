"""Request and response bodies of auth_service (the shapes of ``api.md``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, StringConstraints

from common.time import Timestamp

__all__ = [
    "DeleteAccount",
    "LoginRequest",
    "Password",
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
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


Password = Annotated[str, Field(max_length=1024), AfterValidator(_check_password)]
Username = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_]{3,30}$")]
DisplayName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50)]
Bio = Annotated[str, StringConstraints(max_length=300)]
# Opaque tokens we issued are 43 characters; anything much longer is not one of ours.
OpaqueToken = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class Input(BaseModel):
    # Unknown fields are an error: no client can set server-owned fields.
    model_config = ConfigDict(extra="forbid")


class RegisterRequest(Input):
    username: Username
    email: Annotated[EmailStr, Field(max_length=320)]
    password: Password
    display_name: DisplayName | None = None


class LoginRequest(Input):
    login: Annotated[str, StringConstraints(min_length=1, max_length=320)]
    # Not validated for length: a wrong password of any size is the same generic 401.
    password: Annotated[str, StringConstraints(min_length=1, max_length=1024)]


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
    password: Annotated[str, StringConstraints(min_length=1, max_length=1024)]


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
