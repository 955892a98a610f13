"""Exactly once, checked: every counter and row against the events that were sent."""

from __future__ import annotations

from worker.bench.store import BenchStore
from worker.bench.workload import Expected

MAX_LISTED = 10


async def mismatches(store: BenchStore, expected: Expected, queue_depths: dict[str, int]) -> list[str]:
    """Every way the database (and the queues) disagree with `expected`; empty when all is exact."""
    problems: list[str] = []
    counts = await store.event_id_counts()
    missing = expected.event_ids - counts.keys()
    unexpected = counts.keys() - expected.event_ids
    duplicated = [event_id for event_id, n in counts.items() if n > 1]
    for label, ids in (("not processed", missing), ("unexpected in the inbox", unexpected),
                       ("processed more than once", duplicated)):
        if ids:
            problems.append(f"{len(ids)} event(s) {label}, e.g. {sorted(ids)[:MAX_LISTED]}")
    problems += _compare("users.tokens_used", expected.user_tokens, await store.user_tokens(), absent_is_zero=True)
    problems += _compare("conversations.total_tokens", expected.conversation_tokens, await store.conversation_tokens())
    for table, want in (("messages", expected.messages), ("usage_records", expected.usage_records)):
        got = await store.row_count(table)
        if got != want:
            problems.append(f"{table}: {got} row(s), expected {want}")
    for queue, depth in queue_depths.items():
        if depth:
            problems.append(f"queue {queue} still holds {depth} message(s)")
    return problems


def _compare(label: str, want: dict[str, int], got: dict[str, int], absent_is_zero: bool = False) -> list[str]:
    """Key-by-key differences; users without events exist with 0, conversations without events do not exist."""
    keys = set(want) | set(got)
    wrong = []
    for key in sorted(keys):
        expected_value = want.get(key, 0 if absent_is_zero else None)
        if got.get(key) != expected_value:
            wrong.append(f"{key}: {got.get(key)} != {expected_value}")
    if not wrong:
        return []
    return [f"{label}: {len(wrong)} wrong, e.g. " + "; ".join(wrong[:MAX_LISTED])]
