"""/api/v1/auth: registration, login, tokens, email verification, password reset."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Response, status
from fastapi.responses import HTMLResponse

from auth_service.api.deps import AuthServiceDep, ClientIP, CurrentUser, LimitsDep, UserServiceDep
from auth_service.api.pages import page
from auth_service.schemas import (
    LoginRequest,
    PasswordForm,
    PasswordResetConfirm,
    PasswordResetRequest,
    RefreshRequest,
    RegisterRequest,
    TokenPair,
    UserPrivate,
    VerifyEmailRequest,
)
from auth_service.service.auth import InvalidToken

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

_NO_STORE = {"Cache-Control": "no-store"}


@router.post("/register", status_code=status.HTTP_201_CREATED, response_model=UserPrivate)
async def register(
    body: RegisterRequest, service: AuthServiceDep, limits: LimitsDep, ip: ClientIP
) -> UserPrivate:
    await limits.register(ip)
    user = await service.register(body)
    return UserPrivate.model_validate(user)


@router.post("/login", response_model=TokenPair)
async def login(
    body: LoginRequest, service: AuthServiceDep, ip: ClientIP, response: Response
) -> TokenPair:
    response.headers.update(_NO_STORE)
    return await service.login(body.login, body.password, ip)


@router.post("/token", response_model=TokenPair)
async def token(
    form: Annotated[PasswordForm, Form()],
    service: AuthServiceDep,
    ip: ClientIP,
    response: Response,
) -> TokenPair:
    """OAuth2 password flow (form fields ``username`` and ``password``), for the /docs UI."""
    response.headers.update(_NO_STORE)
    return await service.login(form.username, form.password, ip)


@router.post("/refresh", response_model=TokenPair)
async def refresh(body: RefreshRequest, service: AuthServiceDep, response: Response) -> TokenPair:
    response.headers.update(_NO_STORE)
    return await service.refresh(body.refresh_token)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(body: RefreshRequest, service: AuthServiceDep) -> None:
    await service.logout(body.refresh_token)


@router.post("/verify-email", status_code=status.HTTP_204_NO_CONTENT)
async def verify_email(body: VerifyEmailRequest, service: AuthServiceDep) -> None:
    await service.verify_email(body.token)


@router.get("/verify-email", response_class=HTMLResponse)
async def verify_email_link(
    service: AuthServiceDep, token: Annotated[str | None, Query(max_length=256)] = None
) -> HTMLResponse:
    """The link in the verification email."""
    try:
        if not token:
            raise InvalidToken("Missing token")
        await service.verify_email(token)
    except InvalidToken:
        return HTMLResponse(
            page(
                "Link not valid",
                "<p>This verification link is invalid or has expired. "
                "Sign in and ask for a new one.</p>",
            ),
            status_code=status.HTTP_400_BAD_REQUEST,
            headers=_NO_STORE,
        )
    return HTMLResponse(
        page("Email verified", "<p>Your email address is verified. You can close this page.</p>"),
        headers=_NO_STORE,
    )


@router.post("/resend-verification", status_code=status.HTTP_202_ACCEPTED)
async def resend_verification(
    claims: CurrentUser,
    users: UserServiceDep,
    service: AuthServiceDep,
    limits: LimitsDep,
    ip: ClientIP,
) -> None:
    await limits.resend_verification(ip, claims.sub)
    user = await users.get(claims.sub)
    await service.resend_verification(user)


@router.post("/password-reset", status_code=status.HTTP_202_ACCEPTED)
async def password_reset(
    body: PasswordResetRequest, service: AuthServiceDep, limits: LimitsDep, ip: ClientIP
) -> None:
    await limits.password_reset(ip, str(body.email))
    await service.request_password_reset(str(body.email))


@router.post("/password-reset/confirm", status_code=status.HTTP_204_NO_CONTENT)
async def password_reset_confirm(body: PasswordResetConfirm, service: AuthServiceDep) -> None:
    await service.confirm_password_reset(body.token, body.new_password)


_RESET_FORM = """<form id="f"><label>New password
<input type="password" name="p" minlength="8" autocomplete="new-password" required></label>
<button>Set password</button></form><p id="m" role="status"></p>
<script>
document.getElementById("f").addEventListener("submit", async (e) => {
  e.preventDefault();
  const token = new URLSearchParams(location.search).get("token");
  const r = await fetch(location.pathname, {method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({token, new_password: e.target.p.value})});
  document.getElementById("m").textContent = r.ok
    ? "Your password is changed. You can sign in now."
    : "That did not work: the link may have expired, or the password is too short or long.";
});
</script>"""


@router.get("/password-reset/confirm", response_class=HTMLResponse)
async def password_reset_page() -> HTMLResponse:
    """The link in the password-reset email: a form that posts to the endpoint above."""
    return HTMLResponse(page("Choose a new password", _RESET_FORM), headers=_NO_STORE)
