"""The console's own pages: log in, change one's password, log out.

Server-rendered HTML with every value escaped, and a Content Security Policy that
allows no script at all: the forms work without JavaScript. The session cookie is
HttpOnly and SameSite=Strict; the password form also carries the session's CSRF token.
"""

from __future__ import annotations

import html
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from openpacs.domain.errors import OpenPacsError, Unauthenticated
from openpacs.domain.records import Actor
from openpacs.domain.users import User
from openpacs.http.auth import CSRF_COOKIE, SESSION_COOKIE, client_address
from openpacs.http.context import services

router = APIRouter()

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_STYLE = (
    "body{font-family:system-ui,sans-serif;background:#0b1a2a;color:#e8eef4;display:flex;"
    "justify-content:center;margin-top:12vh}form{background:#13263b;padding:2em;border-radius:8px;width:20em}"
    "label{display:block;margin:.8em 0 .2em}input{width:100%;padding:.5em;box-sizing:border-box}"
    "button{margin-top:1.2em;padding:.6em 1.2em}.error{color:#ff9a9a}.note{color:#a9c7e4}"
)
DEFAULT_NEXT = "/viewer/"


def safe_next(target: str | None) -> str:
    """*target* when it is a path of this server, else the default page (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return DEFAULT_NEXT
    if any(ord(ch) < 0x20 for ch in target):
        return DEFAULT_NEXT
    return target


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    text = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)} - OpenPACS</title>'
        f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{_STYLE}</style></head>'
        f"<body>{body}</body></html>"
    )
    return HTMLResponse(text, status_code=status, headers=SECURITY_HEADERS)


def login_page(next_url: str, error: str = "", status: int = 200, note: str = "") -> HTMLResponse:
    """The login form."""
    message = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    if note:
        message += f'<p class="note">{html.escape(note)}</p>'
    return _page(
        "Log in",
        '<form method="post" action="/login"><h1>OpenPACS</h1>'
        f"{message}"
        '<label for="name">User name</label><input id="name" name="name" autocomplete="username" required autofocus>'
        '<label for="password">Password</label>'
        '<input id="password" name="password" type="password" autocomplete="current-password" required>'
        f'<input type="hidden" name="next" value="{html.escape(next_url)}">'
        '<button type="submit">Log in</button></form>',
        status,
    )


def password_page(next_url: str, csrf: str, error: str = "", status: int = 200) -> HTMLResponse:
    """The change-password form."""
    message = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    return _page(
        "Change password",
        '<form method="post" action="/password"><h1>Change password</h1>'
        f"{message}"
        '<label for="current">Current password</label>'
        '<input id="current" name="current" type="password" autocomplete="current-password" required>'
        '<label for="new">New password (8 characters at least)</label>'
        '<input id="new" name="new" type="password" autocomplete="new-password" minlength="8" required>'
        '<label for="confirm">New password again</label>'
        '<input id="confirm" name="confirm" type="password" autocomplete="new-password" minlength="8" required>'
        f'<input type="hidden" name="csrf" value="{html.escape(csrf)}">'
        f'<input type="hidden" name="next" value="{html.escape(next_url)}">'
        '<button type="submit">Change</button></form>',
        status,
    )


def _with_session(response: Response, request: Request, token: str, csrf: str) -> Response:
    secure = request.url.scheme == "https"
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="strict", secure=secure, path="/")
    response.set_cookie(CSRF_COOKIE, csrf, httponly=False, samesite="strict", secure=secure, path="/")
    return response


async def _session_user(request: Request) -> tuple[User, str] | None:
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    try:
        return await run_in_threadpool(services(request).users.session, cookie)
    except Unauthenticated:
        return None


@router.get("/")
async def home() -> RedirectResponse:
    """The start page is the viewer's study list."""
    return RedirectResponse(DEFAULT_NEXT, status_code=303)


@router.get("/login")
async def login_form(request: Request, next: str | None = None) -> HTMLResponse:
    """The login form."""
    return login_page(safe_next(next))


@router.post("/login")
async def login(
    request: Request,
    name: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = DEFAULT_NEXT,
) -> Response:
    """Check the credentials (failed logins are rate-limited), open a session and go on."""
    target = safe_next(next)
    users = services(request).users
    try:
        user = await run_in_threadpool(users.login, name, password, client_address(request))
    except OpenPacsError as exc:
        return login_page(target, exc.reason, exc.http_status)
    token, csrf = await run_in_threadpool(users.open_session, user)
    if user.must_change_password:
        return _with_session(password_page(target, csrf), request, token, csrf)
    return _with_session(RedirectResponse(target, status_code=303), request, token, csrf)


@router.get("/password")
async def password_form(request: Request, next: str | None = None) -> Response:
    """The change-password form (for a logged-in user)."""
    found = await _session_user(request)
    if found is None:
        return RedirectResponse("/login?next=/password", status_code=303)
    return password_page(safe_next(next), found[1])


@router.post("/password")
async def change_password(
    request: Request,
    current: Annotated[str, Form(max_length=200)] = "",
    new: Annotated[str, Form(max_length=200)] = "",
    confirm: Annotated[str, Form(max_length=200)] = "",
    csrf: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = DEFAULT_NEXT,
) -> Response:
    """Change the password of the logged-in user, then go on with a new session."""
    target = safe_next(next)
    found = await _session_user(request)
    if found is None:
        return login_page(target, "your session has ended: log in again", 401)
    user, session_csrf = found
    if csrf != session_csrf:
        return password_page(target, session_csrf, "the form is stale: try again", 403)
    if new != confirm:
        return password_page(target, session_csrf, "the two new passwords differ", 400)
    users = services(request).users
    address = client_address(request)
    try:
        await run_in_threadpool(users.login, user.name, current, address)
    except OpenPacsError as exc:
        reason = "the current password is wrong" if isinstance(exc, Unauthenticated) else exc.reason
        return password_page(target, session_csrf, reason, exc.http_status)
    try:
        await run_in_threadpool(users.set_password, user.name, new, Actor.user(user.name, address))
    except OpenPacsError as exc:
        return password_page(target, session_csrf, exc.reason, 400)
    user = await run_in_threadpool(users.login, user.name, new, address)
    token, csrf_token = await run_in_threadpool(users.open_session, user)
    return _with_session(RedirectResponse(target, status_code=303), request, token, csrf_token)


@router.post("/logout")
async def logout(request: Request) -> Response:
    """End the session."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        await run_in_threadpool(services(request).users.close_session, cookie)
    response = login_page(DEFAULT_NEXT, note="You are logged out.")
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")
    return response
