"""The SQL index: engine set-up for SQLite and PostgreSQL, units of work, leases, migrations.

SQLite (the embedded default) runs in WAL mode with ``synchronous=FULL`` and a busy
timeout, so that a CLI process can write beside the server; writers take the lock at
the start of their transaction (``BEGIN IMMEDIATE``). PostgreSQL runs with
``synchronous_commit=on``; leases are session advisory locks (ADR 0003).
"""

from __future__ import annotations

import contextlib
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from openpacs.adapters.index import tables as t
from openpacs.adapters.index.fast import FastStatements
from openpacs.adapters.index.session import SqlIndexSession

MIGRATIONS = Path(__file__).parent / "migrations"
#: The newest migration; a test checks that it is Alembic's head.
SCHEMA_HEAD = "0011"


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def create_index_engine(url: str, *, busy_timeout_ms: int = 30000, pool_size: int = 16) -> Engine:
    """An engine for *url* with the durability and concurrency settings of the archive."""
    if url.startswith("sqlite"):
        db_path = url.split(":///", 1)[-1]
        if db_path and db_path != ":memory:":
            Path(db_path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url,
            json_serializer=_json_dumps,
            json_deserializer=orjson.loads,
            pool_size=pool_size,
            max_overflow=32,
            connect_args={"timeout": busy_timeout_ms / 1000, "check_same_thread": False},
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # take transaction control from pysqlite: we emit BEGIN ourselves
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA case_sensitive_like=ON")
            cursor.execute("PRAGMA cache_size=-32000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            mode = "IMMEDIATE" if conn.get_execution_options().get("openpacs_write") else "DEFERRED"
            conn.connection.driver_connection.execute(f"BEGIN {mode}")  # type: ignore[union-attr]

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return sa.create_engine(
        url,
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
        pool_size=pool_size,
        max_overflow=32,
        pool_pre_ping=True,
        connect_args={"options": "-c synchronous_commit=on"},
    )


def _at_head(engine: Engine) -> bool:
    try:
        with engine.connect() as connection:
            return connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == SCHEMA_HEAD
    except sa.exc.DBAPIError:
        return False


def upgrade_schema(engine: Engine) -> None:
    """Apply every Alembic migration not yet applied (``openpacs db upgrade``)."""
    if _at_head(engine):
        return
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            # one migrator at a time when several nodes start together
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7400001)")
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def schema_revision(engine: Engine) -> str | None:
    """The Alembic revision the database is at (None before the first migration)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _lock_key(name: str) -> int:
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


class SqlIndex:
    """The Index port on SQLAlchemy Core."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.engine = create_index_engine(url)
        if migrate:
            upgrade_schema(self.engine)
        self._fast = FastStatements(self.engine.dialect)
        self._local = threading.local()
        self._dedicated: list[Connection] = []
        self._lease_connections: dict[str, Connection] = {}
        self._lease_lock = threading.Lock()
        # SQLite has one writer at a time; a writer that finds the database locked sleeps in
        # SQLite's busy handler by steps of up to 100 ms. Within this process, writers queue on
        # this lock instead and start the moment the previous one commits.
        self._write_lock: contextlib.AbstractContextManager[Any] = (
            threading.RLock() if self.dialect == "sqlite" else contextlib.nullcontext()
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self, *, write: bool = False, dedicated: bool = False) -> Iterator[SqlIndexSession]:
        if write:
            with self._write_lock:
                yield from self._session(write, dedicated)
        else:
            yield from self._session(write, dedicated)

    def _session(self, write: bool, dedicated: bool) -> Iterator[SqlIndexSession]:
        if dedicated:
            # the group committer's own connection, kept open between its transactions
            connection = getattr(self._local, "connection", None)
            if connection is None or connection.closed or connection.invalidated:
                raw = self.engine.connect()
                connection = self._local.connection = raw.execution_options(openpacs_write=write)
                with self._lease_lock:
                    self._dedicated.append(connection)
            try:
                with connection.begin():
                    yield SqlIndexSession(connection, self._fast)
            except BaseException:
                connection.close()
                self._local.connection = None
                raise
            return
        with self.engine.connect() as raw:
            connection = raw.execution_options(openpacs_write=True) if write else raw
            with connection.begin():
                yield SqlIndexSession(connection, self._fast)

    def try_lease(self, name: str, holder: str, ttl_seconds: float) -> bool:
        """Hold the singleton duty *name*: an advisory lock on PostgreSQL, a lease row elsewhere."""
        if self.dialect == "postgresql":
            with self._lease_lock:
                held = self._lease_connections.get(name)
                if held is not None:
                    try:
                        held.execute(sa.text("SELECT 1"))
                        held.commit()
                        return True
                    except sa.exc.DBAPIError:
                        # the session that held the advisory lock is gone, and the lock with it
                        held.invalidate()
                        del self._lease_connections[name]
                connection = self.engine.connect()
                got = connection.execute(sa.select(sa.func.pg_try_advisory_lock(_lock_key(name)))).scalar()
                connection.commit()
                if got:
                    self._lease_connections[name] = connection
                    return True
                connection.close()
                return False
        now = datetime.now(UTC)
        with self.session(write=True) as session:
            conn = session.connection
            row = conn.execute(sa.select(t.lease).where(t.lease.c.name == name)).first()
            expires = now + timedelta(seconds=ttl_seconds)
            if row is None:
                conn.execute(sa.insert(t.lease).values(name=name, holder=holder, expires_at=expires))
                return True
            current_expiry = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)
            if row.holder == holder or current_expiry < now:
                conn.execute(sa.update(t.lease).where(t.lease.c.name == name).values(holder=holder, expires_at=expires))
                return True
            return False

    def release_lease(self, name: str, holder: str) -> None:
        """Give a singleton duty up."""
        if self.dialect == "postgresql":
            with self._lease_lock:
                connection = self._lease_connections.pop(name, None)
            if connection is not None:
                connection.execute(sa.select(sa.func.pg_advisory_unlock(_lock_key(name))))
                connection.commit()
                connection.close()
            return
        with self.session(write=True) as session:
            session.connection.execute(sa.delete(t.lease).where(t.lease.c.name == name, t.lease.c.holder == holder))

    def close(self) -> None:
        with self._lease_lock:
            for connection in self._dedicated:
                connection.close()
            self._dedicated.clear()
            for connection in self._lease_connections.values():
                connection.close()
            self._lease_connections.clear()
        self.engine.dispose()
