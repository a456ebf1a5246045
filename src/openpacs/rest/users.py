"""User accounts (admin only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from openpacs.domain.users import Permission, Role, User
from openpacs.http.auth import Principal, require
from openpacs.http.context import services

router = APIRouter(prefix="/api/users", tags=["users"])
Admin = Annotated[Principal, Depends(require(Permission.MANAGE_USERS))]


class UserOut(BaseModel):
    """An account."""

    name: str
    role: Role
    must_change_password: bool
    disabled: bool
    last_login_at: str | None = None


class NewUser(BaseModel):
    """An account to create; without a password one is generated and returned once."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._@-]+$")
    role: Role
    password: str | None = Field(default=None, min_length=8, max_length=200)


class Created(BaseModel):
    """A created account, with its password when it was generated."""

    user: UserOut
    password: str | None = None


class NewPassword(BaseModel):
    """A new password."""

    password: str = Field(min_length=8, max_length=200)


class NewToken(BaseModel):
    """What the token is for."""

    label: str = Field(default="", max_length=100)


class Token(BaseModel):
    """An API token, shown once."""

    token: str


def _out(user: User) -> UserOut:
    return UserOut(
        name=user.name,
        role=user.role,
        must_change_password=user.must_change_password,
        disabled=user.disabled,
        last_login_at=user.last_login_at.isoformat() if user.last_login_at else None,
    )


@router.get("", summary="List the users")
async def list_users(request: Request, caller: Admin) -> list[UserOut]:
    return [_out(u) for u in await run_in_threadpool(services(request).users.users)]


@router.post("", summary="Create a user", status_code=201)
async def create_user(body: NewUser, request: Request, caller: Admin) -> Created:
    users = services(request).users
    generated = body.password is None
    user, password = await run_in_threadpool(
        lambda: users.create(body.name, body.role, caller.actor, body.password, must_change=generated)
    )
    return Created(user=_out(user), password=None if body.password else password)


@router.delete("/{name}", summary="Remove a user", status_code=204)
async def remove_user(name: str, request: Request, caller: Admin) -> None:
    await run_in_threadpool(services(request).users.remove, name, caller.actor)


@router.put("/{name}/password", summary="Set a user's password", status_code=204)
async def set_password(name: str, body: NewPassword, request: Request, caller: Admin) -> None:
    await run_in_threadpool(services(request).users.set_password, name, body.password, caller.actor)


@router.post("/{name}/tokens", summary="Create an API token for a user", status_code=201)
async def create_token(name: str, body: NewToken, request: Request, caller: Admin) -> Token:
    token = await run_in_threadpool(services(request).users.create_token, name, caller.actor, body.label)
    return Token(token=token)
