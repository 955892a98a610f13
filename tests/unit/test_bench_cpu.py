"""CPU accounting of the bench from /proc."""

from __future__ import annotations

import os
import time

from worker.bench.cpu import CpuSampler, cpu_seconds, per_event_us


def test_cpu_seconds_grow_while_this_process_computes() -> None:
    before = cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    after = cpu_seconds(os.getpid())
    assert before is not None and after is not None
    assert after - before >= 0.2


def test_a_process_that_is_gone_has_no_cpu_time() -> None:
    assert cpu_seconds(2**22 + 12345) is None


def test_cores_between_two_moments_come_from_the_samples_around_them() -> None:
    sampler = CpuSampler(worker_pids=[])
    sampler.times = [100.0, 101.0, 102.0, 103.0]
    sampler.totals = [{"workers": 0.0}, {"workers": 0.8}, {"workers": 1.6}, {"workers": 2.0}]
    assert sampler.cores_between(100.5, 101.5) == {"workers": 0.8}  # samples at 100 and 102
    assert sampler.cores_between(101.0, 103.0) == {"workers": 0.6}
    assert sampler.cores_between(99.0, 101.0) is None  # nothing sampled before the start
    assert per_event_us({"workers": 0.8}, 4000.0) == {"workers": 200.0}
