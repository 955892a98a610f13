"""`observe_many` exposes exactly what one `observe` per amount would."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from worker.observability.metrics import LATENCY_BUCKETS, observe_many

# Amounts on the bounds themselves as well as between and beyond them.
amounts = st.lists(
    st.one_of(st.sampled_from([0.0, *LATENCY_BUCKETS, float("inf")]), st.floats(min_value=0, max_value=100)),
    max_size=300,
)


def _samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    return {
        (sample.name, sample.labels.get("le", "")): sample.value
        for metric in registry.collect()
        for sample in metric.samples
        if not sample.name.endswith("_created")
    }


def _histogram(labelled: bool) -> tuple[Histogram, CollectorRegistry]:
    registry = CollectorRegistry()
    labels = ["type"] if labelled else []
    histogram = Histogram("h_seconds", "test", labels, buckets=LATENCY_BUCKETS, registry=registry)
    return (histogram.labels("message.created") if labelled else histogram), registry


@given(batches=st.lists(amounts, max_size=4), labelled=st.booleans())
def test_observe_many_matches_one_observe_per_amount(batches: list[list[float]], labelled: bool) -> None:
    one_by_one, expected = _histogram(labelled)
    batched, actual = _histogram(labelled)
    for batch in batches:
        for amount in batch:
            one_by_one.observe(amount)
        observe_many(batched, batch)
    got, want = _samples(actual), _samples(expected)
    # Bucket counts and the count exactly; the sum up to float rounding (added in another order).
    assert {k: v for k, v in got.items() if k[0] != "h_seconds_sum"} == {
        k: v for k, v in want.items() if k[0] != "h_seconds_sum"
    }
    got_sum, want_sum = got[("h_seconds_sum", "")], want[("h_seconds_sum", "")]
    assert got_sum == want_sum or math.isclose(got_sum, want_sum, rel_tol=1e-9)


def test_observe_many_refuses_a_histogram_that_needs_labels() -> None:
    registry = CollectorRegistry()
    parent = Histogram("h_seconds", "test", ["type"], registry=registry)
    with pytest.raises(ValueError):
        observe_many(parent, [0.1])
