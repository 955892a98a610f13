"""A private PostgreSQL cluster for fault tests: initdb, start, crash, restart, kill backends, clean up."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import asyncpg

PG_BIN = Path(os.environ.get("TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
OS_USER = "postgres"
# Private servers listen at or above this port (and below the ephemeral range, see free_port).
EXTRA_PORTS_FROM = 20000


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody uses right now, outside the kernel's ephemeral range.

    A server the tests restart gets its port back only if no socket took it meanwhile. Ports
    the kernel hands out for outgoing connections come from the ephemeral range, and while a
    private server is down the workers keep connecting to it: one of those connections (or
    any other on the machine) can get that very port as its local end, and the server's
    restart then fails to bind. Below the range, only another listener could take it.
    """
    low, high = _ephemeral_range()
    candidates = list(range(EXTRA_PORTS_FROM, low)) or list(range(high + 1, 65536))
    random.shuffle(candidates)
    for port in candidates:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free TCP port outside the ephemeral range")


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def as_user(user: str, argv: list[str]) -> list[str]:
    """`argv` run as `user` when we are root (servers refuse to run as root), else as ourselves."""
    return ["runuser", "-u", user, "--", *argv] if os.geteuid() == 0 else argv


class PgCluster:
    """One throw-away cluster: its data, socket and log live in a temp dir removed by `cleanup()`."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="fault-pg-"))
        self.data = self.base / "data"
        self.log_path = self.base / "postgres.log"
        self.port = free_port()
        if os.geteuid() == 0:
            shutil.chown(self.base, OS_USER, OS_USER)

    # -- lifecycle ---------------------------------------------------------------------------

    def init(self) -> PgCluster:
        """`initdb` with trust auth for local and TCP connections."""
        self._run([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                   "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"])
        return self

    def start(self) -> None:
        """Start and wait until the server accepts connections."""
        options = " ".join([
            f"-p {self.port}",
            "-c listen_addresses=127.0.0.1",
            f"-c unix_socket_directories={self.base}",
            "-c max_connections=60",
            # A test cluster needs no durability against OS crashes, only against process crashes.
            "-c fsync=off",
            "-c full_page_writes=off",
        ])
        self._run([str(PG_BIN / "pg_ctl"), "start", "-D", str(self.data), "-l", str(self.log_path),
                   "-w", "-t", "60", "-o", options])

    def stop(self, mode: str = "fast") -> None:
        """Stop with `mode` (`immediate` is a crash: no checkpoint, recovery at the next start)."""
        self._run([str(PG_BIN / "pg_ctl"), "stop", "-D", str(self.data), "-m", mode, "-w", "-t", "60"])

    def is_running(self) -> bool:
        result = subprocess.run(as_user(OS_USER, [str(PG_BIN / "pg_ctl"), "status", "-D", str(self.data)]),
                                capture_output=True, timeout=30, check=False)
        return result.returncode == 0

    def cleanup(self) -> None:
        """Stop (immediately, whatever state it is in) and delete everything."""
        if self.data.exists() and self.is_running():
            try:
                self.stop("immediate")
            except subprocess.CalledProcessError:
                pass
        shutil.rmtree(self.base, ignore_errors=True)

    # -- databases and sessions --------------------------------------------------------------

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str, port: int | None = None) -> str:
        """SQLAlchemy URL of `database`, optionally through another port (a proxy)."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{port or self.port}/{database}"

    async def migrated_database(self, name: str = "aiworker") -> str:
        """Create `name`, upgrade it to head with the project's migrations and add inbox partitions."""
        # Imported here: the cluster itself must not depend on the worker package importing cleanly.
        from worker.db.schema import build_schema
        from worker.settings import Settings

        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        url = self.url(name)
        await build_schema(Settings(_env_file=None, database_url=url))
        return url

    async def terminate_backends(self, application_name: str) -> int:
        """`pg_terminate_backend` every session of `application_name`; returns how many."""
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            return await conn.fetchval(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = $1 AND pid <> pg_backend_pid()",
                application_name,
            )
        finally:
            await conn.close()

    def _run(self, argv: list[str]) -> None:
        # cwd: runuser keeps ours, and postgres may not be allowed to read it.
        subprocess.run(as_user(OS_USER, argv), check=True, capture_output=True, timeout=120, cwd=self.base)
