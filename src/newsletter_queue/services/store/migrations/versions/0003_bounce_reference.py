"""The bounce reference of a delivery: ``nlq_deliveries.bounce_ref`` and its index.

Revision ID: 0003
Revises: 0002

A bounce addressed to ``bounces+<token>@<domain>`` finds its delivery by this reference
(``services/verp.py``). Rows written before it stay ``NULL``: their messages went out
without a VERP address, so no bounce can name them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("nlq_deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("bounce_ref", sa.String(length=20), nullable=True))
        batch_op.create_index("ix_delivery_bounce_ref", ["bounce_ref"], unique=False)



def downgrade() -> None:
    with op.batch_alter_table("nlq_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_delivery_bounce_ref")
        batch_op.drop_column("bounce_ref")

