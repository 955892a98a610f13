"""The spool: durable, in order, bounded, one owner at a time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from worker.producer import OutgoingEvent, Spool, SpoolFull, SpoolInUse


def events(n: int, start: int = 0, size: int = 10) -> list[OutgoingEvent]:
    return [OutgoingEvent(id=f"e{i}", type="usage.recorded", body=b"x" * size) for i in range(start, start + n)]


def test_events_come_out_in_the_order_they_went_in_and_leave_only_when_removed(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s", max_bytes=10_000)
    spool.append(events(3))
    spool.append(events(2, start=3))
    head = spool.head(10)
    assert [e.id for e in head] == ["e0", "e1", "e2", "e3", "e4"]
    spool.remove(head[:2])
    assert [e.id for e in spool.head(2)] == ["e2", "e3"]
    assert (spool.count, spool.size_bytes) == (3, 30)
    spool.close()


def test_a_reopened_spool_still_holds_its_events(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s", max_bytes=10_000)
    spool.append(events(4))
    spool.remove(spool.head(1))
    spool.close()
    again = Spool(tmp_path / "s", max_bytes=10_000)
    assert [e.id for e in again.head(10)] == ["e1", "e2", "e3"] and again.size_bytes == 30
    again.close()


def test_a_full_spool_refuses_the_whole_append_keeps_what_it_has_and_counts_it(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s", max_bytes=50)
    spool.append(events(4))
    before = REGISTRY.get_sample_value("worker_producer_spool_refused_events_total") or 0
    with pytest.raises(SpoolFull, match="holds 40 of 50 bytes: 2 event"):
        spool.append(events(2, start=4))
    assert REGISTRY.get_sample_value("worker_producer_spool_refused_events_total") == before + 2
    assert [e.id for e in spool.head(10)] == ["e0", "e1", "e2", "e3"]
    spool.append(events(1, start=9))  # what still fits is taken
    assert spool.count == 5
    spool.close()


def test_a_second_owner_is_refused_and_open_slot_takes_the_next_free_file(tmp_path: Path) -> None:
    first = Spool.open_slot(tmp_path / "s", max_bytes=100)
    with pytest.raises(SpoolInUse):
        Spool(tmp_path / "s", max_bytes=100)
    second = Spool.open_slot(tmp_path / "s", max_bytes=100)
    assert (first.path.name, second.path.name) == ("s", "s.1")
    first.close()
    third = Spool.open_slot(tmp_path / "s", max_bytes=100)
    assert third.path.name == "s"
    second.close()
    third.close()


def test_appended_events_survive_sigkill(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import os, sys, time
        from worker.producer import OutgoingEvent, Spool
        spool = Spool({str(tmp_path / "s")!r}, max_bytes=10**6)
        for i in range(50):
            spool.append([OutgoingEvent(id=f"e{{i}}", type="usage.recorded", body=b"{{}}")])
        print("appended", flush=True)
        time.sleep(60)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    assert child.stdout is not None and child.stdout.readline() == b"appended\n"
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)
    spool = Spool(tmp_path / "s", max_bytes=10**6)
    assert [e.id for e in spool.head(100)] == [f"e{i}" for i in range(50)]
    spool.close()
