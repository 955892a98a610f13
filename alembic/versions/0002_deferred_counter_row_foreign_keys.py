"""Check the foreign keys that point at counter rows at commit, not at each insert.

A foreign-key check takes a KEY SHARE lock on the referenced row. Checked at each insert, a
hot user's row is KEY SHARE-locked by every concurrent transaction that stores a usage
record or a new conversation for that user, while the one growing its `tokens_used` holds
it FOR NO KEY UPDATE: the lockers of one row become a MultiXact, rebuilt with every new
locker, and every visibility check of the row reads its members. With one transaction per
event and one busy user, that is most of PostgreSQL's CPU. Checked at commit, after the
Unit of Work has locked and grown its counter rows itself, the check finds the row already
locked by its own transaction and adds nothing. The constraints themselves are unchanged:
a violation still rolls the whole transaction back (at COMMIT, with the same SQLSTATE 23503).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, constraint): the foreign keys to rows whose counters a batch grows at its end.
COUNTER_ROW_FOREIGN_KEYS = (
    ("conversations", "fk_conversations_user_id_users"),
    ("usage_records", "fk_usage_records_user_id_users"),
    ("messages", "fk_messages_conversation_id_conversations"),
    ("usage_records", "fk_usage_records_conversation_id_conversations"),
)


def upgrade() -> None:
    for table, constraint in COUNTER_ROW_FOREIGN_KEYS:
        op.execute(f"ALTER TABLE {table} ALTER CONSTRAINT {constraint} DEFERRABLE INITIALLY DEFERRED")


def downgrade() -> None:
    for table, constraint in COUNTER_ROW_FOREIGN_KEYS:
        op.execute(f"ALTER TABLE {table} ALTER CONSTRAINT {constraint} NOT DEFERRABLE")
