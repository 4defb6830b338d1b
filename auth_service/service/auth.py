"""Registration, login, token rotation, email verification and password reset."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service import SERVICE_NAME
from auth_service.models import OneTimeToken, RefreshToken, TokenPurpose, User
from auth_service.repository.tokens import OneTimeTokenRepository, RefreshTokenRepository
from auth_service.repository.users import UserRepository
from auth_service.schemas import RegisterRequest, TokenPair
from auth_service.service.keys import KeyRing
from auth_service.service.limits import AuthLimits
from auth_service.service.passwords import PasswordHasher
from auth_service.service.tokens import hash_token, new_opaque_token
from auth_service.settings import AuthSettings
from common.errors import BadRequest, Conflict, Unauthorized
from common.events import (
    UserEmailVerified,
    UserPasswordResetRequested,
    UserRegistered,
    UserVerificationRequested,
)
from common.ids import new_id
from common.logging import get_logger
from common.outbox import emit
from common.sealing import sealer
from common.time import utcnow

__all__ = ["AuthService", "InvalidToken"]
INVALID_CREDENTIALS = "Invalid credentials"

log = get_logger(__name__)


class InvalidToken(BadRequest):
    """A verification or reset token that is unknown, spent or expired (one message for all)."""


@dataclass
class AuthService:
    session: AsyncSession
    settings: AuthSettings
    keys: KeyRing
    hasher: PasswordHasher
    limits: AuthLimits

    @property
    def users(self) -> UserRepository:
        return UserRepository(self.session)

    @property
    def refresh_tokens(self) -> RefreshTokenRepository:
        return RefreshTokenRepository(self.session)

    @property
    def one_time_tokens(self) -> OneTimeTokenRepository:
        return OneTimeTokenRepository(self.session)

    # -- registration ------------------------------------------------------------------------

    async def register(self, data: RegisterRequest) -> User:
        email = str(data.email)
        self._raise_if_taken(*await self.users.taken(data.username, email))
        now = utcnow()
        user = User(
            id=new_id(),
            username=data.username,
            email=email,
            display_name=data.display_name or data.username,
            bio="",
            password_hash=await self.hasher.hash(data.password),
            email_verified=False,
            created_at=now,
            updated_at=now,
        )
        try:
            await self.users.add(user)
        except IntegrityError as exc:
            # Lost a race with a concurrent registration of the same name or address.
            await self.session.rollback()
            raise Conflict("Username or email is already taken") from exc
        await emit(
            self.session,
            UserRegistered(
                user_id=user.id,
                username=user.username,
                display_name=user.display_name,
                email=user.email,
            ),
            producer=SERVICE_NAME,
        )
        await self._request_verification(user)
        log.info("user_registered", user_id=user.id)
        return user

    @staticmethod
    def _raise_if_taken(username_taken: bool, email_taken: bool) -> None:
        if username_taken:
            raise Conflict("Username is already taken")
        if email_taken:
            raise Conflict("Email is already registered")

    # -- login and tokens --------------------------------------------------------------------

    async def login(self, login: str, password: str, client_ip: str) -> TokenPair:
        await self.limits.login_client(client_ip)
        user = await self.users.get_by_login(login)
        # The account, not the spelling: username and email share one bucket. A login that
        # names no account is limited the same way, so the limits do not tell the two apart.
        account = user.id if user else f"login:{login.lower()}"
        await self.limits.login_attempt(client_ip, account)
        # Always one bcrypt verification, against a dummy hash when there is no account.
        ok = await self.hasher.verify(password, user.password_hash if user else None)
        if user is None or not ok:
            raise Unauthorized(INVALID_CREDENTIALS)
        await self.limits.login_succeeded(client_ip, account)
        log.info("user_logged_in", user_id=user.id)
        return await self._issue(user, family_id=new_id(), parent_id=None)

    async def refresh(self, refresh_token: str) -> TokenPair:
        now = utcnow()
        token = await self.refresh_tokens.get_by_hash_for_update(hash_token(refresh_token))
        if token is None:
            raise Unauthorized("Invalid refresh token")
        if token.revoked_at is not None:
            raise Unauthorized("Invalid refresh token")
        if token.used_at is not None:
            # A spent token came back: it was stolen or replayed, so end the whole session.
            await self.refresh_tokens.revoke_family(token.family_id, now)
            await self.session.commit()
            log.warning("refresh_token_reused", user_id=token.user_id, family_id=token.family_id)
            raise Unauthorized("Invalid refresh token")
        if token.expires_at <= now:
            raise Unauthorized("Invalid refresh token")
        user = await self.users.get(token.user_id)
        if user is None:
            raise Unauthorized("Invalid refresh token")
        await self.refresh_tokens.mark_used(token.id, now)
        return await self._issue(user, family_id=token.family_id, parent_id=token.id)

    async def logout(self, refresh_token: str) -> None:
        token = await self.refresh_tokens.get_by_hash_for_update(hash_token(refresh_token))
        if token is not None:
            await self.refresh_tokens.revoke_family(token.family_id, utcnow())

    async def _issue(self, user: User, *, family_id: str, parent_id: str | None) -> TokenPair:
        now = utcnow()
        ttl = timedelta(seconds=self.settings.access_token_ttl_s)
        access = self.keys.mint_access_token(
            user_id=user.id,
            username=user.username,
            issuer=self.settings.jwt_issuer,
            audience=self.settings.jwt_audience,
            now=now,
            ttl=ttl,
        )
        refresh = new_opaque_token()
        await self.refresh_tokens.add(
            RefreshToken(
                id=new_id(),
                user_id=user.id,
                family_id=family_id,
                parent_id=parent_id,
                token_hash=hash_token(refresh),
                created_at=now,
                expires_at=now + timedelta(seconds=self.settings.refresh_token_ttl_s),
            )
        )
        return TokenPair(
            access_token=access,
            refresh_token=refresh,
            expires_in=self.settings.access_token_ttl_s,
        )

    # -- email verification ------------------------------------------------------------------

    async def resend_verification(self, user: User) -> None:
        if user.email_verified:
            return
        await self.one_time_tokens.spend_unused(user.id, TokenPurpose.VERIFY_EMAIL, utcnow())
        await self._request_verification(user)

    def _seal(self, email: str, token: str) -> str:
        # Only email_service can read these: the outbox, broker and dead-letter copies of the
        # event are ciphertext (docs/api-auth.md, "Tokens in events").
        return sealer(self.settings.event_seal_keys).seal({"email": email, "token": token})

    async def _request_verification(self, user: User) -> None:
        await self._mail_token(
            user,
            TokenPurpose.VERIFY_EMAIL,
            self.settings.verification_token_ttl_s,
            UserVerificationRequested,
        )

    async def _mail_token(
        self,
        user: User,
        purpose: str,
        ttl_s: int,
        event: type[UserVerificationRequested | UserPasswordResetRequested],
    ) -> None:
        """A new one-time token, sent sealed in ``event`` for email_service to mail."""
        token = await self._new_one_time_token(user.id, purpose, ttl_s)
        await emit(
            self.session,
            event(user_id=user.id, username=user.username, sealed=self._seal(user.email, token)),
            producer=SERVICE_NAME,
        )

    async def verify_email(self, token: str) -> None:
        now = utcnow()
        record = await self.one_time_tokens.get_by_hash_for_update(
            hash_token(token), TokenPurpose.VERIFY_EMAIL
        )
        if record is None:
            raise InvalidToken("Invalid or expired token")
        user = await self.users.get_for_update(record.user_id)
        if user is None:
            raise InvalidToken("Invalid or expired token")
        if record.used_at is not None:
            # Following the link twice is a retry of the same verification, not an error;
            # a spent token cannot do anything the first use did not already do.
            if user.email_verified:
                return
            raise InvalidToken("Invalid or expired token")
        if record.expires_at <= now:
            raise InvalidToken("Invalid or expired token")
        await self.one_time_tokens.mark_used(record.id, now)
        if not user.email_verified:
            user.email_verified = True
            user.updated_at = now
            await emit(
                self.session,
                UserEmailVerified(user_id=user.id),
                producer=SERVICE_NAME,
            )
            log.info("user_email_verified", user_id=user.id)

    # -- password reset ----------------------------------------------------------------------

    async def request_password_reset(self, email: str) -> None:
        user = await self.users.get_by_email(email)
        if user is None:
            return
        now = utcnow()
        await self.one_time_tokens.spend_unused(user.id, TokenPurpose.PASSWORD_RESET, now)
        await self._mail_token(
            user,
            TokenPurpose.PASSWORD_RESET,
            self.settings.password_reset_token_ttl_s,
            UserPasswordResetRequested,
        )
        log.info("user_password_reset_requested", user_id=user.id)

    async def confirm_password_reset(self, token: str, new_password: str) -> None:
        now = utcnow()
        record = await self.one_time_tokens.get_by_hash_for_update(
            hash_token(token), TokenPurpose.PASSWORD_RESET
        )
        if record is None or record.used_at is not None or record.expires_at <= now:
            raise InvalidToken("Invalid or expired token")
        user = await self.users.get_for_update(record.user_id)
        if user is None:
            raise InvalidToken("Invalid or expired token")
        await self.one_time_tokens.mark_used(record.id, now)
        user.password_hash = await self.hasher.hash(new_password)
        user.updated_at = now
        # Whoever held a session with the old password loses it.
        await self.refresh_tokens.revoke_all_of_user(user.id, now)
        log.info("user_password_reset", user_id=user.id)

    async def _new_one_time_token(self, user_id: str, purpose: str, ttl_s: int) -> str:
        now = utcnow()
        token = new_opaque_token()
        await self.one_time_tokens.add(
            OneTimeToken(
                id=new_id(),
                user_id=user_id,
                purpose=purpose,
                token_hash=hash_token(token),
                created_at=now,
                expires_at=now + timedelta(seconds=ttl_s),
            )
        )
        return token
