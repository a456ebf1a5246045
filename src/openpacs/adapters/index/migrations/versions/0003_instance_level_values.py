"""instance.level_values: the header's patient/study/series elements (issue 3)

Retrieval and metadata decide whether the index's attribute sets change an instance from
these few elements instead of parsing the whole header. Existing rows are filled here.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 06:50:00
"""

from __future__ import annotations

import orjson
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from openpacs.domain.tags import level_elements

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_BATCH = 1000


def upgrade() -> None:
    op.add_column("instance", sa.Column("level_values", _JSON, nullable=True))
    connection = op.get_bind()
    instance = sa.table(
        "instance", sa.column("pk", sa.BigInteger), sa.column("header", sa.Text), sa.column("level_values", _JSON)
    )
    last = 0
    while True:
        rows = connection.execute(
            sa.select(instance.c.pk, sa.cast(instance.c.header, sa.Text))
            .where(instance.c.pk > last)
            .order_by(instance.c.pk)
            .limit(_BATCH)
        ).all()
        if not rows:
            break
        for pk, header in rows:
            connection.execute(
                sa.update(instance).where(instance.c.pk == pk).values(level_values=level_elements(orjson.loads(header)))
            )
        last = rows[-1][0]


def downgrade() -> None:
    # a plain ALTER TABLE (SQLite 3.35+): batch mode would copy and drop the table, and the
    # drop would cascade to the location rows
    op.drop_column("instance", "level_values")
