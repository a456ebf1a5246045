"""UserService: local accounts, API tokens, browser sessions, and the login guard.

Passwords are hashed with Argon2id (argon2-cffi); API tokens and session tokens are
random and kept as SHA-256 digests, so the index never holds a usable secret. Failed
logins are counted per name and client address and refused for a while after too
many (HTTP 429); they are logged with the name and address, never the password.
Secrets never reach the logs.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from openpacs.domain.errors import Conflict, NotFound, TooManyAttempts, Unauthenticated
from openpacs.domain.records import Actor
from openpacs.domain.users import Role, User
from openpacs.ports.index import AuditRecord, Index

log = logging.getLogger(__name__)

TOKEN_PREFIX = "opt_"  # noqa: S105 - a prefix that makes tokens recognisable, not a secret
MIN_PASSWORD_LENGTH = 8
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-@")


def digest(secret: str) -> str:
    """The stored form of a token (SHA-256, hex)."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class LoginPolicy:
    """How many failed logins are tolerated, and for how long a name is then refused."""

    max_failures: int = 5
    window_seconds: float = 300.0
    lockout_seconds: float = 300.0
    session_hours: float = 12.0
    basic_cache_seconds: float = 300.0


class UserService:
    """Accounts and authentication; thread-safe."""

    def __init__(self, index: Index, *, clock: Callable[[], datetime], policy: LoginPolicy | None = None) -> None:
        self._index = index
        self._clock = clock
        self._policy = policy or LoginPolicy()
        self._hasher = PasswordHasher()
        self._failures: dict[tuple[str, str], list[float]] = {}
        self._locked: dict[tuple[str, str], float] = {}
        self._basic: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    # -- accounts -------------------------------------------------------------------------

    def users(self) -> list[User]:
        """All accounts, by name."""
        with self._index.session() as session:
            return session.accounts.users()

    def create(
        self, name: str, role: Role, actor: Actor, password: str | None = None, *, must_change: bool = False
    ) -> tuple[User, str]:
        """Create an account; returns it with its password (generated when none is given)."""
        if not name or len(name) > 64 or not set(name) <= _NAME_CHARS:
            raise Conflict("a user name has 1 to 64 letters, digits, '.', '_', '-' or '@'")
        password = password or secrets.token_urlsafe(12)
        self._check_password(password)
        now = self._clock()
        with self._index.session(write=True) as session:
            if session.accounts.user_with_hash(name) is not None:
                raise Conflict(f"a user named {name!r} exists already")
            pk = session.accounts.add_user(name, role, self._hasher.hash(password), must_change, now)
            session.add_audit([self._record(actor, "user-add", name, {"role": str(role)})])
            user = session.accounts.user(pk)
        assert user is not None
        return user, password

    def set_password(self, name: str, password: str, actor: Actor) -> None:
        """Change a password; the user's sessions end."""
        self._check_password(password)
        with self._index.session(write=True) as session:
            found = session.accounts.user_with_hash(name)
            if found is None:
                raise NotFound(f"no user named {name!r}")
            user, _ = found
            now = self._clock()
            session.accounts.update_user(
                user.pk, now, password_hash=self._hasher.hash(password), must_change_password=False
            )
            session.accounts.remove_sessions_of(user.pk)
            session.add_audit([self._record(actor, "user-password", name, {})])
        self._forget_basic()

    def remove(self, name: str, actor: Actor) -> None:
        """Remove an account, with its tokens and sessions."""
        with self._index.session(write=True) as session:
            if not session.accounts.remove_user(name):
                raise NotFound(f"no user named {name!r}")
            session.add_audit([self._record(actor, "user-remove", name, {})])
        self._forget_basic()

    def create_token(self, name: str, actor: Actor, label: str = "") -> str:
        """A new API token for *name*, shown once."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self._index.session(write=True) as session:
            found = session.accounts.user_with_hash(name)
            if found is None:
                raise NotFound(f"no user named {name!r}")
            session.accounts.add_token(found[0].pk, digest(token), label, self._clock())
            session.add_audit([self._record(actor, "token-create", name, {"label": label})])
        return token

    def ensure_initial_admin(self) -> str | None:
        """On a first start with no account, create 'admin' and return its one-time password."""
        with self._index.session() as session:
            if session.accounts.count_users():
                return None
        try:
            _, password = self.create("admin", Role.ADMIN, Actor.system("first start"), must_change=True)
        except Conflict:
            return None  # another process was first
        return password

    # -- authentication -------------------------------------------------------------------

    def login(self, name: str, password: str, address: str) -> User:
        """Check a name and password, with the failed-login guard (raises Unauthenticated, TooManyAttempts)."""
        key = (name, address)
        now = time.monotonic()
        with self._lock:
            until = self._locked.get(key, 0.0)
            if until > now:
                raise TooManyAttempts(f"too many failed logins: try again in {int(until - now) + 1} s")
        with self._index.session() as session:
            found = session.accounts.user_with_hash(name)
        ok = False
        if found is not None:
            try:
                ok = self._hasher.verify(found[1], password)
            except (VerificationError, InvalidHashError):
                ok = False
        if not ok or found is None or found[0].disabled:
            self._failed(key, now)
            log.warning("failed login for %r from %s", name, address)
            with self._index.session(write=True) as session:
                record = self._record(Actor.user(name[:64], address), "login", name[:64], {})
                session.add_audit([replace(record, outcome="failure")])
            raise Unauthenticated("wrong user name or password")
        with self._lock:
            self._failures.pop(key, None)
        user = found[0]
        with self._index.session(write=True) as session:
            session.accounts.update_user(user.pk, self._clock(), last_login_at=self._clock())
        return user

    def _failed(self, key: tuple[str, str], now: float) -> None:
        with self._lock:
            recent = [t for t in self._failures.get(key, []) if now - t < self._policy.window_seconds]
            recent.append(now)
            self._failures[key] = recent
            if len(recent) >= self._policy.max_failures:
                self._locked[key] = now + self._policy.lockout_seconds
                log.warning("login for %r from %s locked for %d s", key[0], key[1], self._policy.lockout_seconds)

    def basic(self, name: str, password: str, address: str) -> User:
        """HTTP Basic credentials; verified ones are remembered for a few minutes (Argon2 is slow on purpose)."""
        cache_key = digest(f"{name}\x00{password}")
        now = time.monotonic()
        with self._lock:
            cached = self._basic.get(cache_key)
        if cached is not None and cached[1] > now:
            with self._index.session() as session:
                user = session.accounts.user(cached[0])
            if user is not None and not user.disabled:
                return user
        user = self.login(name, password, address)
        with self._lock:
            if len(self._basic) > 10_000:
                self._basic.clear()
            self._basic[cache_key] = (user.pk, now + self._policy.basic_cache_seconds)
        return user

    def _forget_basic(self) -> None:
        with self._lock:
            self._basic.clear()

    def token(self, token: str) -> User:
        """The user of an API token (raises Unauthenticated)."""
        with self._index.session() as session:
            user = session.accounts.user_by_token(digest(token))
        if user is None or user.disabled:
            raise Unauthenticated("invalid or revoked token")
        return user

    def open_session(self, user: User) -> tuple[str, str]:
        """A browser session for *user*: (session token for the cookie, CSRF token)."""
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        now = self._clock()
        with self._index.session(write=True) as session:
            session.accounts.purge_sessions(now)
            session.accounts.add_session(
                user.pk, digest(token), csrf, now, now + timedelta(hours=self._policy.session_hours)
            )
        return token, csrf

    def session(self, token: str) -> tuple[User, str]:
        """The user and CSRF token of a session cookie (raises Unauthenticated)."""
        with self._index.session() as session:
            found = session.accounts.session(digest(token), self._clock())
        if found is None or found[0].disabled:
            raise Unauthenticated("no session, or it has expired")
        return found

    def close_session(self, token: str) -> None:
        """Log out."""
        with self._index.session(write=True) as session:
            session.accounts.remove_session(digest(token))

    # -- helpers --------------------------------------------------------------------------

    @staticmethod
    def _check_password(password: str) -> None:
        if len(password) < MIN_PASSWORD_LENGTH:
            raise Conflict(f"a password has at least {MIN_PASSWORD_LENGTH} characters")

    def _record(self, actor: Actor, action: str, name: str, details: dict[str, str]) -> AuditRecord:
        return AuditRecord(self._clock(), actor, action, "success", [{"level": "USER", "uid": name}], details)
