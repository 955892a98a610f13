"""Benchmark of `GET /users/{id}/quota` (the gateway's hot path) against a Starlette + asyncpg floor.

    .venv/bin/python ops/bench/api_quota.py [--users 10000] [--duration 10] [--connections 1,16,64]

Needs `wrk` (Debian package `wrk`) and the local PostgreSQL (`WORKER_BENCH_ADMIN_DSN`, default
postgresql://postgres@127.0.0.1:5432/postgres). Makes a database of its own, migrates it, fills it
with users and one API key each, then runs `worker api` and the floor (one uvicorn process each,
uvloop + httptools, the same pool size) side by side, taking turns, with wrk picking a random user and
that user's key for every request. Prints a Markdown table; the database is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import asyncpg

REPO = Path(__file__).resolve().parents[2]
ADMIN_DSN = os.environ.get("WORKER_BENCH_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
POOL_SIZE = int(os.environ.get("BENCH_POOL_SIZE", "10"))
QUOTA = "SELECT tokens_used, tokens_limit FROM users WHERE id = $1"


def floor_app(dsn: str):  # noqa: ANN201 - a Starlette app
    """The floor: the same single-row read, nothing else (no auth, no transaction, no validation)."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    pool: asyncpg.Pool | None = None

    @contextlib.asynccontextmanager
    async def lifespan(app):  # noqa: ANN001, ANN202
        nonlocal pool
        pool = await asyncpg.create_pool(dsn, min_size=POOL_SIZE, max_size=POOL_SIZE)
        yield
        await pool.close()

    async def quota(request):  # noqa: ANN001, ANN202
        row = await pool.fetchrow(QUOTA, uuid.UUID(request.path_params["user_id"]))
        if row is None:
            return Response(status_code=404)
        used, limit = row[0], row[1]
        return JSONResponse({"tokens_used": used, "tokens_limit": limit,
                             "tokens_remaining": max(limit - used, 0), "exceeded": used >= limit})

    return Starlette(routes=[Route("/users/{user_id}/quota", quota)], lifespan=lifespan)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _prepare(users: int) -> tuple[str, list[tuple[str, str]]]:
    """A migrated database with `users` users and one key each; returns its URL and (id, key) pairs."""
    sys.path.insert(0, str(REPO))
    from worker.api.credentials import key_hash, new_api_key
    from worker.commands import migrate
    from worker.settings import Settings

    name = f"aiworker_bench_api_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = ADMIN_DSN.rsplit("/", 1)[0]
    url = f"{base}/{name}".replace("postgresql://", "postgresql+asyncpg://", 1)
    await migrate.build_schema(Settings(_env_file=None, database_url=url))
    pairs = [(str(uuid.uuid4()), new_api_key()) for _ in range(users)]
    conn = await asyncpg.connect(f"{base}/{name}")
    try:
        await conn.copy_records_to_table(
            "users", columns=["id", "email", "hashed_password", "tokens_used"],
            records=[(uuid.UUID(u), f"{u}@bench.test", "!", i % 5000) for i, (u, _) in enumerate(pairs)],
        )
        await conn.copy_records_to_table(
            "api_keys", columns=["id", "user_id", "key_hash", "name"],
            records=[(uuid.uuid4(), uuid.UUID(u), key_hash(k), "bench") for u, k in pairs],
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return url, pairs


async def _drop(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def _lua(pairs: list[tuple[str, str]], path: Path) -> None:
    rows = ",\n".join(f'{{"{u}","{k}"}}' for u, k in pairs)
    path.write_text(
        "local pairs = {\n" + rows + "\n}\n"
        "local delay_ms = tonumber(os.getenv('WRK_DELAY_MS') or '0')\n"
        "request = function()\n"
        "  local p = pairs[math.random(#pairs)]\n"
        "  return wrk.format('GET', '/users/' .. p[1] .. '/quota', {['Authorization'] = 'Bearer ' .. p[2]})\n"
        "end\n"
        "if delay_ms > 0 then delay = function() return delay_ms end end\n"
    )


def _start(kind: str, url: str, admin_token: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_")}
    if kind == "api":
        env.update(WORKER_DATABASE_URL=url, WORKER_API_ADMIN_TOKEN=admin_token, WORKER_API_PORT=str(port),
                   WORKER_DB_POOL_SIZE=str(POOL_SIZE), WORKER_LOG_LEVEL="WARNING", WORKER_LOG_FORMAT="json")
        args = [sys.executable, "-m", "worker", "api", "--host", "127.0.0.1"]
    else:
        env["BENCH_FLOOR_DSN"] = url.replace("postgresql+asyncpg://", "postgresql://", 1)
        args = [sys.executable, "-m", "uvicorn", "--factory", "api_quota:floor_from_env", "--host", "127.0.0.1",
                "--port", str(port), "--loop", "uvloop", "--http", "httptools", "--no-access-log",
                "--log-level", "warning", "--app-dir", str(Path(__file__).parent)]
    process = subprocess.Popen(args, cwd=REPO, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{base}/users/{uuid.uuid4()}/quota", timeout=1)  # noqa: S310
        except urllib.error.HTTPError:
            return process, base
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{kind} did not start: {log.read_text()}")


def floor_from_env():  # noqa: ANN201
    return floor_app(os.environ["BENCH_FLOOR_DSN"])


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _wrk(base: str, lua: Path, connections: int, duration: int, delay_ms: float = 0) -> dict[str, float]:
    threads = min(connections, 2)
    env = {**os.environ, "WRK_DELAY_MS": str(delay_ms)}
    done = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s", "--latency", "-s", str(lua), base],
        capture_output=True, text=True, env=env, timeout=duration + 60,
    )
    out = done.stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)

    def percentile(p: str) -> float:
        value, unit = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * _UNITS[unit]

    result = {"rps": rps, "p50_ms": percentile("50"), "p99_ms": percentile("99"),
              "socket_errors": sum(int(n) for n in errors.groups()) if errors else 0}
    print(f"  {base} c={connections} delay={delay_ms:.2f}ms: {result}", file=sys.stderr, flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", default="1,16,64")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    connections = [int(c) for c in args.connections.split(",")]
    url, pairs = asyncio.run(_prepare(args.users))
    admin_token = secrets.token_urlsafe(32)
    results: dict[str, dict] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            lua = Path(tmp) / "quota.lua"
            _lua(pairs, lua)
            # Both servers run for the whole benchmark and take turns, so that whatever else the
            # machine does weighs on both alike.
            servers = {kind: _start(kind, url, admin_token, Path(tmp) / f"{kind}.log") for kind in ("floor", "api")}
            try:
                for kind, (_, base) in servers.items():
                    _wrk(base, lua, 16, 3)  # warm-up: pools filled, statements prepared
                    results[kind] = {}
                for c in connections:
                    for kind, (_, base) in servers.items():
                        results[kind][str(c)] = _wrk(base, lua, c, args.duration)
                for kind, (_, base) in servers.items():
                    peak = max(r["rps"] for r in results[kind].values())
                    results[kind]["half"] = _half_load(base, lua, peak, args.duration)
            finally:
                for process, _ in servers.values():
                    process.terminate()
                    process.wait(30)
    finally:
        asyncio.run(_drop(url))
    _report(results, connections)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def _half_load(base: str, lua: Path, peak: float, duration: int) -> dict[str, float]:
    """16 connections paced by wrk's per-request delay to about half the peak; the pace is corrected twice."""
    connections, target = 16, peak / 2
    delay = max(connections * 1000 / target - 1.0, 0.1)
    result: dict[str, float] = {}
    for _ in range(3):
        result = _wrk(base, lua, connections, duration, delay_ms=delay)
        if abs(result["rps"] - target) / target < 0.1:
            break
        delay = max(delay * result["rps"] / target, 0.1)
    return {**result, "target_rps": target, "delay_ms": delay}


def _report(results: dict[str, dict], connections: list[int]) -> None:
    print("| connections | floor req/s | floor p50 / p99 ms | API req/s | API p50 / p99 ms | API / floor |")
    print("|---|---|---|---|---|---|")
    for c in [str(c) for c in connections] + ["half"]:
        f, a = results["floor"][c], results["api"][c]
        label = f"16, paced to half of each one's peak ({a['target_rps']:.0f} / {f['target_rps']:.0f} req/s)" if (
            c == "half") else c
        print(f"| {label} | {f['rps']:.0f} | {f['p50_ms']:.2f} / {f['p99_ms']:.2f} | {a['rps']:.0f} | "
              f"{a['p50_ms']:.2f} / {a['p99_ms']:.2f} | {a['rps'] / f['rps']:.2f} |")


if __name__ == "__main__":
    sys.exit(main())
