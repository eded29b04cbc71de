"""kyc, the operator audit trail, wallet freezes

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-03 08:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "operator_actions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("subject_type", sa.String(length=32), nullable=False),
        sa.Column("subject_id", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("details", sa.Text(), server_default=sa.text("'{}'"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operator_actions")),
    )
    with op.batch_alter_table("operator_actions", schema=None) as batch_op:
        batch_op.create_index("ix_operator_actions_action", ["action", "created_at"], unique=False)
        batch_op.create_index("ix_operator_actions_actor", ["actor", "created_at"], unique=False)
        batch_op.create_index("ix_operator_actions_created", ["created_at", "id"], unique=False)
        batch_op.create_index(
            "ix_operator_actions_subject", ["subject_type", "subject_id"], unique=False
        )

    op.create_table(
        "kyc_records",
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("full_name", sa.String(length=128), nullable=False),
        sa.Column("document_type", sa.String(length=32), nullable=False),
        sa.Column("document_number", sa.String(length=64), nullable=False),
        sa.Column("document_front_url", sa.String(length=1024), nullable=False),
        sa.Column("document_back_url", sa.String(length=1024), nullable=True),
        sa.Column("selfie_url", sa.String(length=1024), nullable=False),
        sa.Column("address", sa.String(length=256), nullable=False),
        sa.Column("city", sa.String(length=128), nullable=False),
        sa.Column("state", sa.String(length=128), nullable=False),
        sa.Column("postal_code", sa.String(length=16), nullable=False),
        sa.Column("submissions", sa.Integer(), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('submitted', 'approved', 'rejected')",
            name=op.f("ck_kyc_records_status_known"),
        ),
        sa.CheckConstraint("submissions > 0", name=op.f("ck_kyc_records_submissions_positive")),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_kyc_records")),
    )
    with op.batch_alter_table("kyc_records", schema=None) as batch_op:
        batch_op.create_index(
            "ix_kyc_records_status", ["status", "submitted_at", "user_id"], unique=False
        )
        batch_op.create_index("ix_kyc_records_submitted", ["submitted_at", "user_id"], unique=False)

    # Nullable columns: added in place on both databases, no table rebuild.
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("frozen_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("frozen_reason", sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column("frozen_by", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("frozen_by")
        batch_op.drop_column("frozen_reason")
        batch_op.drop_column("frozen_at")

    with op.batch_alter_table("kyc_records", schema=None) as batch_op:
        batch_op.drop_index("ix_kyc_records_submitted")
        batch_op.drop_index("ix_kyc_records_status")
    op.drop_table("kyc_records")

    with op.batch_alter_table("operator_actions", schema=None) as batch_op:
        batch_op.drop_index("ix_operator_actions_subject")
        batch_op.drop_index("ix_operator_actions_created")
        batch_op.drop_index("ix_operator_actions_actor")
        batch_op.drop_index("ix_operator_actions_action")
    op.drop_table("operator_actions")
