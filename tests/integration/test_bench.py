"""`worker bench` as CI runs it: a small bench for correctness only (exact counters), never for speed."""

from __future__ import annotations

import json
import subprocess
import sys

import asyncpg
import pytest

from tests.support.config import make_settings
from tests.support.processes import REPO, settings_env
from tests.support.services import ADMIN_DSN, AMQP_BASE, PG_HOST_URL, drop_database

pytestmark = pytest.mark.slow

LATENCY_KEYS = {"count", "p50", "p95", "p99", "max"}


async def _leftover_databases(prefix: str) -> set[str]:
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        return {r["datname"] for r in await conn.fetch("SELECT datname FROM pg_database WHERE datname LIKE $1", prefix + "%")}
    finally:
        await conn.close()


@pytest.mark.timeout(400)
async def test_a_small_bench_verifies_every_counter_and_writes_its_json(tmp_path) -> None:
    # The bench creates (and drops) a database beside the one named here, and a vhost of its own.
    settings = make_settings(f"{PG_HOST_URL}/postgres", f"{AMQP_BASE}/", log_format="json")
    result_path = tmp_path / "bench.json"
    completed = subprocess.run(
        [sys.executable, "-m", "worker", "bench", "--events", "1500", "--users", "50", "--batch-sizes", "1,8",
         "--workers", "1", "--half-load-seconds", "2", "--stall-timeout", "60", "--json", str(result_path)],
        cwd=REPO, env=settings_env(settings), capture_output=True, timeout=380,
    )
    assert completed.returncode == 0, completed.stderr.decode()[-4000:] + completed.stdout.decode()[-2000:]

    result = json.loads(result_path.read_text())
    assert result["counters_ok"] is True
    # A raw rate before the first run of each workload and after every run: each run is judged
    # by the mean of the two measurements on either side of it.
    assert [r["workload"] for r in result["raw"]] == ["uniform"] * 3 + ["hot"] * 3
    runs = {(run["workload"], run["batch_size"]) for run in result["runs"]}
    assert runs == {("uniform", 1), ("uniform", 8), ("hot", 1), ("hot", 8)}
    for run in result["runs"]:
        assert run["counters_ok"] is True, run["mismatches"]
        assert run["mismatches"] == [] and run["error"] is None
        assert run["events"] == 1500 and run["workers"] == 1
        assert run["worker_exit_codes"] == [0]
        assert run["events_per_s"] > 0 and run["raw_events_per_s"] > 0
        assert len(run["raw_bracket"]) == 2
        assert run["raw_events_per_s"] == pytest.approx(sum(run["raw_bracket"]) / 2, abs=0.1)
        assert set(run["latency_ms"]["full_load"]) == LATENCY_KEYS
        assert run["latency_ms"]["full_load"]["count"] == 1500
        assert set(run["latency_ms"]["half_load"]) == LATENCY_KEYS
        assert run["half_load_events"] > 0
        # Every half-load publish was confirmed, so each has a confirm latency.
        assert run["latency_ms"]["half_load_confirm"]["count"] == run["half_load_events"]
        # The same load on the broker alone: every one of those events reached the bare consumer.
        assert run["latency_ms"]["raw_half_load"]["count"] == run["half_load_events"]
        assert len(run["peak_rss_mb"]) == 1 and run["peak_rss_mb"][0] > 0
    assert {v["target"] for v in result["targets"]} >= {"end-to-end / raw", "p99 at half load (ms)", "peak RSS (MB)"}
    assert "counters" in completed.stdout.decode()
    # Without the server's autovacuum the bench keeps the planner statistics current itself.
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        autovacuum = await conn.fetchval("SHOW autovacuum")
    finally:
        await conn.close()
    assert result["statistics"]["by"] == ("server" if autovacuum == "on" else "bench")
    if autovacuum != "on":
        assert result["statistics"]["analyze_runs"] > 0
        assert result["statistics"]["statistics_target"] == 10

    # Nothing is left behind: the private database is dropped (the vhost is checked by the bench's own DELETE).
    assert result["database"] not in await _leftover_databases("aiworker_bench_")
    await drop_database(result["database"])  # no-op unless the assertion above failed
