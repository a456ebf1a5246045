"""Logging in and out of the console (browser sessions), and one's own account."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from openpacs.domain.errors import Unauthenticated
from openpacs.domain.users import User
from openpacs.http.auth import CSRF_COOKIE, SESSION_COOKIE, Principal, client_address, principal
from openpacs.http.context import services

router = APIRouter(prefix="/api", tags=["session"])


class Credentials(BaseModel):
    """A user name and password."""

    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=200)


class PasswordChange(BaseModel):
    """The current password and the new one."""

    current_password: str = Field(min_length=1, max_length=200)
    new_password: str = Field(min_length=8, max_length=200)


class Me(BaseModel):
    """The logged-in user."""

    name: str
    role: str
    must_change_password: bool
    csrf_token: str = ""


def _me(user: User, csrf: str = "") -> Me:
    return Me(name=user.name, role=str(user.role), must_change_password=user.must_change_password, csrf_token=csrf)


@router.post("/session", summary="Log in (opens a browser session)")
async def login(body: Credentials, request: Request, response: Response) -> Me:
    """Checks the password (failed logins are rate-limited) and sets the session cookie.

    Requests made with the cookie that change anything must send the returned
    ``csrf_token`` in the ``X-CSRF-Token`` header.
    """
    users = services(request).users
    user = await run_in_threadpool(users.login, body.name, body.password, client_address(request))
    token, csrf = await run_in_threadpool(users.open_session, user)
    secure = request.url.scheme == "https"
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="strict", secure=secure, path="/")
    response.set_cookie(CSRF_COOKIE, csrf, httponly=False, samesite="strict", secure=secure, path="/")
    return _me(user, csrf)


@router.delete("/session", summary="Log out", status_code=204)
async def logout(request: Request, response: Response, caller: Annotated[Principal, Depends(principal)]) -> None:
    """Ends the browser session."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        await run_in_threadpool(services(request).users.close_session, cookie)
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")


@router.get("/me", summary="Who am I")
async def me(caller: Annotated[Principal, Depends(principal)]) -> Me:
    """The authenticated user."""
    return _me(caller.user, caller.csrf)


@router.put("/me/password", summary="Change my password", status_code=204)
async def change_password(
    body: PasswordChange, request: Request, caller: Annotated[Principal, Depends(principal)]
) -> None:
    """Changes the caller's password (the current one is checked); other sessions end."""
    users = services(request).users
    try:
        await run_in_threadpool(users.login, caller.user.name, body.current_password, client_address(request))
    except Unauthenticated as exc:
        raise Unauthenticated("the current password is wrong") from exc
    await run_in_threadpool(users.set_password, caller.user.name, body.new_password, caller.actor)
