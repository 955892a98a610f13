"""Budgets: costs, billing periods, quota threshold crossings and the transactional outbox.

- Costs are exact decimals, NUMERIC(30, 12): on messages and usage records (NULL when no
  price was known), and as `cost_used` beside `tokens_used` on users and conversations.
- `model_prices`: input and output price per token of a model, valid from a day (UTC).
- Users gain a budget period (`none` = lifetime, `day`, `month`; calendar periods in UTC)
  and an optional `cost_limit_usd`; `tokens_limit` applies per period.
- `usage_periods`: one row per (user, period kind, period start), grown in the same
  transaction as the user's counters for users whose budget has a period (every existing
  user starts with `none`, so there is nothing to fill in here).
- `quota_crossings`: one row per threshold crossed, keyed by its derived event id, so a
  threshold is reported once per (user, period, limit kind, limit value).
- `outbox`: events written in the transaction that caused them, published by the relay.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COST = sa.Numeric(30, 12)
PRICE = sa.Numeric(30, 18)


def upgrade() -> None:
    op.add_column("users", sa.Column("cost_used", COST, nullable=False, server_default="0"))
    op.add_column("users", sa.Column("cost_limit_usd", COST))
    op.add_column("users", sa.Column("budget_period", sa.String(5), nullable=False, server_default="none"))
    op.create_check_constraint(op.f("ck_users_cost_used_non_negative"), "users", "cost_used >= 0")
    op.create_check_constraint(op.f("ck_users_cost_limit_non_negative"), "users", "cost_limit_usd >= 0")
    op.create_check_constraint(op.f("ck_users_budget_period_known"), "users", "budget_period IN ('none', 'day', 'month')")
    op.add_column("conversations", sa.Column("cost_used", COST, nullable=False, server_default="0"))
    op.create_check_constraint(op.f("ck_conversations_cost_used_non_negative"), "conversations", "cost_used >= 0")
    op.add_column("messages", sa.Column("cost_usd", COST))
    op.add_column("usage_records", sa.Column("cost_usd", COST))

    op.create_table(
        "model_prices",
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("valid_from", sa.Date, nullable=False),
        sa.Column("input_cost_per_token", PRICE, nullable=False),
        sa.Column("output_cost_per_token", PRICE, nullable=False),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("model", "valid_from", name=op.f("pk_model_prices")),
        sa.CheckConstraint(
            "input_cost_per_token >= 0 AND output_cost_per_token >= 0", name=op.f("ck_model_prices_prices_non_negative")
        ),
    )
    op.create_table(
        "usage_periods",
        sa.Column("user_id", UUID(as_uuid=True), nullable=False),
        sa.Column("period", sa.String(5), nullable=False),
        sa.Column("period_start", sa.Date, nullable=False),
        sa.Column("tokens", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("cost_usd", COST, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("user_id", "period", "period_start", name=op.f("pk_usage_periods")),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_usage_periods_user_id_users"), ondelete="CASCADE",
            deferrable=True, initially="DEFERRED",
        ),
        sa.CheckConstraint("period IN ('day', 'month')", name=op.f("ck_usage_periods_period_known")),
        sa.CheckConstraint("tokens >= 0 AND cost_usd >= 0", name=op.f("ck_usage_periods_usage_non_negative")),
    )
    op.create_table(
        "quota_crossings",
        sa.Column("event_id", UUID(as_uuid=True), nullable=False),
        sa.Column("user_id", UUID(as_uuid=True), nullable=False),
        sa.Column("period", sa.String(5), nullable=False),
        sa.Column("period_start", sa.Date),
        sa.Column("limit_kind", sa.String(10), nullable=False),
        sa.Column("limit_value", COST, nullable=False),
        sa.Column("threshold", sa.Integer, nullable=False),
        sa.Column("usage", COST, nullable=False),
        sa.Column("crossed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_quota_crossings")),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_quota_crossings_user_id_users"), ondelete="CASCADE",
            deferrable=True, initially="DEFERRED",
        ),
        sa.CheckConstraint("limit_kind IN ('tokens', 'cost_usd')", name=op.f("ck_quota_crossings_limit_kind_known")),
    )
    op.create_index(op.f("ix_quota_crossings_user_period"), "quota_crossings", ["user_id", "period", "period_start"])
    op.create_table(
        "outbox",
        sa.Column("seq", sa.BigInteger, sa.Identity(always=True), nullable=False),
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("ordering_key", UUID(as_uuid=True), nullable=False),
        sa.Column("routing_key", sa.String(255), nullable=False),
        sa.Column("payload", JSONB, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_outbox")),
        sa.UniqueConstraint("event_id", name=op.f("uq_outbox_event_id")),
    )
    op.create_index(
        "ix_outbox_unsent", "outbox", ["ordering_key", "seq"], postgresql_where=sa.text("sent_at IS NULL")
    )
    op.create_index(op.f("ix_outbox_sent_at"), "outbox", ["sent_at"], postgresql_where=sa.text("sent_at IS NOT NULL"))


def downgrade() -> None:
    op.drop_table("outbox")
    op.drop_table("quota_crossings")
    op.drop_table("usage_periods")
    op.drop_table("model_prices")
    op.drop_column("usage_records", "cost_usd")
    op.drop_column("messages", "cost_usd")
    op.drop_constraint("ck_conversations_cost_used_non_negative", "conversations")
    op.drop_column("conversations", "cost_used")
    for name in ("budget_period_known", "cost_limit_non_negative", "cost_used_non_negative"):
        op.drop_constraint(f"ck_users_{name}", "users")
    for column in ("budget_period", "cost_limit_usd", "cost_used"):
        op.drop_column("users", column)
