"""Alembic environment: migrations run on the connection handed over by the caller."""

from __future__ import annotations

from alembic import context

from openpacs.adapters.index.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reached by a misconfigured caller
    raise RuntimeError("run migrations through openpacs (openpacs db upgrade)")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
