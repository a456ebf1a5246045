"""Who is calling: HTTP Basic, Bearer tokens (API tokens), or a browser session cookie.

Browser sessions are CSRF-safe: the cookie is HttpOnly and SameSite=Strict, and every
state-changing request made with it must repeat the session's CSRF token in the
``X-CSRF-Token`` header (the double-submit pattern; the token is also given to the
page in a readable cookie). Basic and Bearer requests carry their credentials
themselves and need no CSRF token.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool

from openpacs.domain.errors import NotAuthorized, Unauthenticated
from openpacs.domain.records import Actor
from openpacs.domain.users import Permission, User
from openpacs.http.context import services

SESSION_COOKIE = "openpacs_session"
CSRF_COOKIE = "openpacs_csrf"
CSRF_HEADER = "x-csrf-token"
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: paths a user who must change the password may still use
_PASSWORD_PATHS = ("/api/session", "/api/me")


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    user: User
    method: str  # "basic", "bearer" or "session"
    address: str
    csrf: str = ""

    @property
    def actor(self) -> Actor:
        """The caller as the audit's actor."""
        return Actor.user(self.user.name, self.address)


def client_address(request: Request) -> str:
    """The peer's address."""
    return request.client.host if request.client else ""


async def principal(request: Request) -> Principal:
    """The caller of *request* (raises Unauthenticated, or NotAuthorized for a missing CSRF token)."""
    users = services(request).users
    address = client_address(request)
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer" and value.strip():
            user = await run_in_threadpool(users.token, value.strip())
            return Principal(user, "bearer", address)
        if scheme == "basic":
            try:
                name, _, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise Unauthenticated("malformed Basic credentials") from exc
            user = await run_in_threadpool(users.basic, name, password, address)
            return Principal(user, "basic", address)
        raise Unauthenticated("unsupported authorization scheme (use Basic or Bearer)")
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        user, csrf = await run_in_threadpool(users.session, cookie)
        if request.method in _UNSAFE and request.headers.get(CSRF_HEADER) != csrf:
            raise NotAuthorized(f"the {CSRF_HEADER} header is missing or wrong")
        return Principal(user, "session", address, csrf)
    raise Unauthenticated("authentication required")


def require(permission: Permission) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller, who must hold *permission*."""

    async def dependency(request: Request, caller: Principal = Depends(principal)) -> Principal:  # noqa: B008
        if caller.user.must_change_password and not request.url.path.startswith(_PASSWORD_PATHS):
            raise NotAuthorized("the password must be changed first (PUT /api/me/password)")
        if not caller.user.can(permission):
            raise NotAuthorized(f"role {caller.user.role} may not do this ({permission})")
        return caller

    return dependency
