"""`worker api` as a process: it refuses to start without an admin token, serves, and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

from tests.support.api import ADMIN_TOKEN, ApiServer


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - local test server
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_the_api_refuses_to_start_without_an_admin_token(database_url, tmp_path) -> None:
    server = ApiServer(database_url, tmp_path / "api.log", admin_token=None).start(wait=False)
    assert server.process.wait(30) == 2
    assert "WORKER_API_ADMIN_TOKEN" in server.log_text()


def test_the_api_serves_probes_and_writes_an_access_log_without_secrets(database_url, tmp_path) -> None:
    server = ApiServer(database_url, tmp_path / "api.log").start()
    try:
        assert _get(f"{server.base_url}/readyz") == (200, b'{"status":"ok"}')
        status, _ = _get(f"{server.base_url}/users/00000000-0000-0000-0000-000000000000/quota", ADMIN_TOKEN)
        assert status == 404
        assert _get(f"{server.base_url}/users/x/messages/search?q=confidential", "lpw_wrong")[0] == 401
    finally:
        assert server.terminate() == 0
    log = server.log_text()
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    access = [line for line in lines if line.get("event") == "request"]
    assert {line["route"] for line in access} >= {"/readyz", "/users/{user_id}/quota"}
    assert all(len(line["request_id"]) == 32 and "duration_ms" in line for line in access)
    for secret in (ADMIN_TOKEN, "lpw_wrong", "confidential", "00000000-0000-0000-0000-000000000000"):
        assert secret not in log


def test_sigterm_lets_a_request_in_flight_finish(database_url, tmp_path) -> None:
    server = ApiServer(database_url, tmp_path / "api.log").start()
    answers: list[int] = []
    # Creating a user hashes its password with argon2id: long enough to be in flight at SIGTERM.
    body = json.dumps({"email": f"{time.time_ns()}@sigterm.test", "password": "a long password"}).encode()
    request = urllib.request.Request(f"{server.base_url}/users", data=body, method="POST", headers={
        "Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"})

    def call() -> None:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - local test server
            answers.append(response.status)

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(0.05)
    assert server.terminate() == 0
    caller.join(30)
    assert answers == [201]
