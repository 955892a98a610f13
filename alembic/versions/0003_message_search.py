"""Full-text search over message content: a generated `tsvector` (`simple` configuration) and its GIN index.

The `simple` configuration lower-cases and splits on non-word characters without stemming or
stop words, so it treats every language alike (English, German, Russian, …): a search finds
the words as written. Only the first 65,536 characters are indexed, which keeps a tsvector far
below PostgreSQL's 1 MB limit for the largest content the contract accepts (1 MiB).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE messages ADD COLUMN content_search tsvector "
        "GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, left(content, 65536))) STORED"
    )
    op.execute("CREATE INDEX ix_messages_content_search ON messages USING gin (content_search)")


def downgrade() -> None:
    op.execute("DROP INDEX ix_messages_content_search")
    op.execute("ALTER TABLE messages DROP COLUMN content_search")
