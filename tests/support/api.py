"""The HTTP API under test: an app over the test database, callers and their keys."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.db import create_user
from tests.support.processes import REPO
from worker.api.credentials import key_hash, new_api_key

ADMIN_TOKEN = "test-admin-token-" + "x" * 16


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


ADMIN = bearer(ADMIN_TOKEN)


async def insert_api_key(
    db: AsyncEngine, user_id: uuid.UUID, *, active: bool = True, expires_at: datetime | None = None
) -> tuple[uuid.UUID, str]:
    """A key stored the way the API stores one (its hash only); returns (id, plaintext)."""
    key_id, key = uuid.uuid4(), new_api_key()
    async with db.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO api_keys (id, user_id, key_hash, name, is_active, expires_at)"
                " VALUES (:id, :user_id, :hash, 'test', :active, :expires)"
            ),
            {"id": key_id, "user_id": user_id, "hash": key_hash(key), "active": active, "expires": expires_at},
        )
    return key_id, key


@dataclass
class World:
    """Two users: `owner` with an active, a revoked and an expired key and a conversation; `other` with a key."""

    owner: uuid.UUID
    own_key: str
    revoked_key: str
    expired_key: str
    conversation: uuid.UUID
    other: uuid.UUID
    other_key: str


async def make_world(db: AsyncEngine) -> World:
    owner, other = await create_user(db), await create_user(db)
    conversation = uuid.uuid4()
    async with db.begin() as conn:
        await conn.execute(
            text("INSERT INTO conversations (id, user_id, model, title) VALUES (:id, :user_id, 'gpt-test', 'hi')"),
            {"id": conversation, "user_id": owner},
        )
    return World(
        owner=owner,
        own_key=(await insert_api_key(db, owner))[1],
        revoked_key=(await insert_api_key(db, owner, active=False))[1],
        expired_key=(await insert_api_key(db, owner, expires_at=datetime.now(UTC) - timedelta(seconds=1)))[1],
        conversation=conversation,
        other=other,
        other_key=(await insert_api_key(db, other))[1],
    )


class ApiServer:
    """`python -m worker api` in a child process on a free port, as a pod runs it."""

    def __init__(self, database_url: str, log_path: Path, *, admin_token: str | None = ADMIN_TOKEN) -> None:
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_")}
        self.env.update(WORKER_DATABASE_URL=database_url, WORKER_API_PORT=str(self.port), WORKER_LOG_FORMAT="json",
                        WORKER_DB_POOL_SIZE="5")
        if admin_token is not None:
            self.env["WORKER_API_ADMIN_TOKEN"] = admin_token
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, wait: bool = True) -> ApiServer:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "worker", "api", "--host", "127.0.0.1"],
                cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )
        if wait:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"worker api exited: {self.log_path.read_text()}")
                try:
                    with urllib.request.urlopen(f"{self.base_url}/livez", timeout=1):  # noqa: S310 - local test server
                        return self
                except OSError:
                    time.sleep(0.1)
            raise TimeoutError("worker api did not answer /livez")
        return self

    def terminate(self, timeout: float = 30) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def log_text(self) -> str:
        return self.log_path.read_text()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
