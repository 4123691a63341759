"""The suppression list: ``nlq_suppressions``, and the stats row's ``suppressed`` count.

Revision ID: 0002
Revises: 0001

``nlq_suppressions`` holds the addresses a tenant's campaigns never mail again, keyed by
the address's hash (``services/store/suppressions.py``); ``nlq_campaign_stats.suppressed``
counts the recipients a campaign skipped because they were listed (0 for older rows).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "nlq_suppressions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("tenant_id", sa.String(length=128), nullable=False),
        sa.Column("email_hash", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("campaign_id", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "email_hash", name="uq_suppression"),
    )
    with op.batch_alter_table("nlq_suppressions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_suppression_tenant_time", ["tenant_id", "created_at"], unique=False
        )

    with op.batch_alter_table("nlq_campaign_stats", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("suppressed", sa.Integer(), server_default="0", nullable=False)
        )



def downgrade() -> None:
    with op.batch_alter_table("nlq_campaign_stats", schema=None) as batch_op:
        batch_op.drop_column("suppressed")

    with op.batch_alter_table("nlq_suppressions", schema=None) as batch_op:
        batch_op.drop_index("ix_suppression_tenant_time")

    op.drop_table("nlq_suppressions")
