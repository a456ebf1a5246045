"""User accounts, API tokens and web sessions in the index."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from openpacs.adapters.index import tables as t
from openpacs.adapters.index.fast import aware
from openpacs.domain.users import Role, User


def _user(row: Any) -> User:
    return User(
        pk=row.pk,
        name=row.name,
        role=Role(row.role),
        must_change_password=row.must_change_password,
        disabled=row.disabled,
        created_at=aware(row.created_at),
        last_login_at=aware(row.last_login_at),
    )


class Accounts:
    """The account part of a unit of work."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def users(self) -> list[User]:
        return [_user(r) for r in self.connection.execute(sa.select(t.user).order_by(t.user.c.name))]

    def count_users(self) -> int:
        return int(self.connection.execute(sa.select(sa.func.count()).select_from(t.user)).scalar_one())

    def user_with_hash(self, name: str) -> tuple[User, str] | None:
        row = self.connection.execute(sa.select(t.user).where(t.user.c.name == name)).first()
        return None if row is None else (_user(row), row.password_hash)

    def user(self, pk: int) -> User | None:
        row = self.connection.execute(sa.select(t.user).where(t.user.c.pk == pk)).first()
        return None if row is None else _user(row)

    def add_user(self, name: str, role: Role, password_hash: str, must_change: bool, now: datetime) -> int:
        result = self.connection.execute(
            sa.insert(t.user).values(
                name=name,
                role=str(role),
                password_hash=password_hash,
                must_change_password=must_change,
                created_at=now,
                updated_at=now,
            )
        )
        return int(result.inserted_primary_key[0])  # type: ignore[index]

    def update_user(self, pk: int, now: datetime, **values: Any) -> None:
        self.connection.execute(sa.update(t.user).where(t.user.c.pk == pk).values(updated_at=now, **values))

    def remove_user(self, name: str) -> bool:
        return bool(self.connection.execute(sa.delete(t.user).where(t.user.c.name == name)).rowcount)

    def add_token(self, user_pk: int, token_hash: str, label: str, now: datetime) -> None:
        self.connection.execute(
            sa.insert(t.api_token).values(user_pk=user_pk, token_hash=token_hash, label=label[:100], created_at=now)
        )

    def user_by_token(self, token_hash: str) -> User | None:
        row = self.connection.execute(
            sa.select(t.user)
            .join(t.api_token, t.api_token.c.user_pk == t.user.c.pk)
            .where(t.api_token.c.token_hash == token_hash, t.api_token.c.revoked_at.is_(None))
        ).first()
        return None if row is None else _user(row)

    def revoke_tokens(self, user_pk: int, now: datetime) -> int:
        return int(
            self.connection.execute(
                sa.update(t.api_token)
                .where(t.api_token.c.user_pk == user_pk, t.api_token.c.revoked_at.is_(None))
                .values(revoked_at=now)
            ).rowcount
        )

    def add_session(self, user_pk: int, token_hash: str, csrf: str, now: datetime, expires: datetime) -> None:
        self.connection.execute(
            sa.insert(t.web_session).values(
                user_pk=user_pk, token_hash=token_hash, csrf_token=csrf, created_at=now, expires_at=expires
            )
        )

    def session(self, token_hash: str, now: datetime) -> tuple[User, str] | None:
        row = self.connection.execute(
            sa.select(t.user, t.web_session.c.csrf_token)
            .join(t.web_session, t.web_session.c.user_pk == t.user.c.pk)
            .where(t.web_session.c.token_hash == token_hash, t.web_session.c.expires_at > now)
        ).first()
        return None if row is None else (_user(row), row.csrf_token)

    def remove_session(self, token_hash: str) -> None:
        self.connection.execute(sa.delete(t.web_session).where(t.web_session.c.token_hash == token_hash))

    def remove_sessions_of(self, user_pk: int) -> None:
        self.connection.execute(sa.delete(t.web_session).where(t.web_session.c.user_pk == user_pk))

    def purge_sessions(self, now: datetime) -> None:
        self.connection.execute(sa.delete(t.web_session).where(t.web_session.c.expires_at <= now))
