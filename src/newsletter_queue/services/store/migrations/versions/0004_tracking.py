"""Open and click tracking: the campaign's opt-in flags and the stats row's totals.

Revision ID: 0004
Revises: 0003

``nlq_campaigns.track_opens`` / ``track_clicks`` (off for every campaign saved before);
``nlq_campaign_stats.opens`` / ``clicks`` count every hit, repeated ones included (the
unique counts were there already).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("nlq_campaign_stats", schema=None) as batch_op:
        batch_op.add_column(sa.Column("opens", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("clicks", sa.Integer(), server_default="0", nullable=False))

    with op.batch_alter_table("nlq_campaigns", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("track_opens", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(
            sa.Column("track_clicks", sa.Boolean(), server_default=sa.false(), nullable=False)
        )



def downgrade() -> None:
    with op.batch_alter_table("nlq_campaigns", schema=None) as batch_op:
        batch_op.drop_column("track_clicks")
        batch_op.drop_column("track_opens")

    with op.batch_alter_table("nlq_campaign_stats", schema=None) as batch_op:
        batch_op.drop_column("clicks")
        batch_op.drop_column("opens")

