"""The wheel stands alone: built from the checkout, installed into a fresh virtualenv and run
from a directory outside the checkout, it migrates a fresh database and stores an example event."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import orjson
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support.config import make_settings
from tests.support.db import rows, tokens_used
from tests.support.events import example
from tests.support.pg_cluster import free_port
from tests.support.processes import REPO, WorkerProcess, settings_env
from tests.support.services import create_database, drop_database, unique_name
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow

# What a build of the package reads from the checkout (the image's build context is the same).
BUILD_INPUTS = ("pyproject.toml", "setup.py", "README.md", "worker", "alembic")
EXAMPLE_TOKENS = 412 + 187


async def test_the_installed_wheel_migrates_runs_and_stores_an_example_from_any_directory(
    amqp_url, tmp_path, monkeypatch
) -> None:
    # The child processes must import the installed wheel, never this checkout.
    monkeypatch.delenv("PYTHONPATH", raising=False)
    venv = await asyncio.to_thread(_install_wheel, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    imported_from = _run(venv / "bin" / "python", "-c", "import worker; print(worker.__file__)", cwd=elsewhere)
    assert Path(imported_from.strip()).is_relative_to(venv), imported_from

    name = unique_name("aiworker_wheel")
    database_url = await create_database(name)
    settings = make_settings(database_url, amqp_url, http_port=free_port(), require_queue_policy=False)
    worker = WorkerProcess(settings, tmp_path / "worker.log", command=(str(venv / "bin" / "worker"),), cwd=elsewhere)
    engine = create_async_engine(database_url, pool_size=1)
    try:
        await asyncio.to_thread(_run, venv / "bin" / "worker", "migrate", cwd=elsewhere, settings=settings)
        user_output = await asyncio.to_thread(
            _run, venv / "bin" / "worker", "users", "create", "--email", f"{uuid.uuid4()}@wheel.test",
            cwd=elsewhere, settings=settings,
        )
        user_id = uuid.UUID(user_output.strip())
        worker.start()
        await eventually(lambda: _ready(settings.http_port), timeout=60, interval=0.2)
        event = _example_for(user_id)
        (elsewhere / "event.json").write_bytes(orjson.dumps(event))
        await asyncio.to_thread(_run, venv / "bin" / "worker", "publish", "event.json", cwd=elsewhere, settings=settings)
        await eventually(lambda: _tokens(engine, user_id, EXAMPLE_TOKENS), timeout=30, interval=0.2)
        [stored] = await rows(engine, "SELECT * FROM messages WHERE id = :id", id=uuid.UUID(event["data"]["message_id"]))
        assert stored["metadata"] == event["data"]["metadata"]
    finally:
        code = await asyncio.to_thread(worker.terminate) if worker.process else None
        await engine.dispose()
        await drop_database(name)
    assert code == 0, "\n".join(worker.log_lines()[-20:])


def _install_wheel(tmp_path: Path) -> Path:
    """Build the wheel from a copy of the build inputs, install it into a fresh virtualenv; return the venv."""
    source, dist, venv = tmp_path / "source", tmp_path / "dist", tmp_path / "venv"
    source.mkdir()
    for name in BUILD_INPUTS:
        origin = REPO / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(origin, source / name)
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(dist), str(source))
    [wheel] = dist.glob("llm_persistence_worker-*.whl")
    _run(sys.executable, "-m", "venv", str(venv))
    _run(venv / "bin" / "python", "-m", "pip", "install", "--quiet", str(wheel))
    return venv


def _run(*command: object, cwd: Path | None = None, settings=None) -> str:
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=settings_env(settings) if settings is not None else None,
        capture_output=True,
        timeout=180,
    )
    assert result.returncode == 0, f"{command}: {result.stderr.decode(errors='replace')[-2000:]}"
    return result.stdout.decode()


def _example_for(user_id: uuid.UUID) -> dict:
    event = example("message.created")
    event["id"] = f"{event['id']}-{uuid.uuid4()}"
    event["data"].update(user_id=str(user_id), message_id=str(uuid.uuid4()), conversation_id=str(uuid.uuid4()))
    return event


async def _ready(port: int) -> bool:
    def probe() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    return await asyncio.to_thread(probe)


async def _tokens(engine, user_id: uuid.UUID, expected: int) -> bool:
    return await tokens_used(engine, user_id) == expected
