"""A second, private RabbitMQ node for fault tests (stop and start it at will), and queue listings.

The node gets its own name, ports, data, logs and HOME (with a copy of the machine's Erlang
cookie, so `rabbitmqctl` run as the `rabbitmq` user can talk to it), all in a temp dir.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from tests.support.pg_cluster import as_user, free_port

RABBIT_BIN = Path(os.environ.get("TEST_RABBIT_BIN", "/usr/lib/rabbitmq/bin"))
SHARED_COOKIE = Path("/var/lib/rabbitmq/.erlang.cookie")
SHARED_CTL = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
OS_USER = "rabbitmq"


class RabbitNode:
    """One throw-away node `fault-<random>@localhost` listening on 127.0.0.1 only."""

    def __init__(self) -> None:
        self.name = f"fault-{uuid.uuid4().hex[:8]}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="fault-rabbit-"))
        self.home = self.base / "home"
        self.process: subprocess.Popen[bytes] | None = None
        self._starts = 0
        self._prepare()

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _prepare(self) -> None:
        self.home.mkdir()
        (self.base / "log").mkdir()
        (self.base / "mnesia").mkdir()
        if SHARED_COOKIE.exists():
            shutil.copy(SHARED_COOKIE, self.home / ".erlang.cookie")
            os.chmod(self.home / ".erlang.cookie", 0o400)
        # No plugins: no management or prometheus listener to collide with the shared node's.
        (self.base / "enabled_plugins").write_text("[].\n")
        (self.base / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.port}\n"
            "log.console = false\n"
            "log.file.level = info\n"
        )
        # Our own env file: the machine's one would name the node rabbit@localhost.
        (self.base / "rabbitmq-env.conf").write_text("ERL_EPMD_ADDRESS=127.0.0.1\n")
        if os.geteuid() == 0:
            for path in [self.base, *self.base.rglob("*")]:
                shutil.chown(path, OS_USER, OS_USER)

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update({
            "HOME": str(self.home),
            "RABBITMQ_CONF_ENV_FILE": str(self.base / "rabbitmq-env.conf"),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_FEATURE_FLAGS_FILE": str(self.base / "feature_flags"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(self.base / "plugins-expand"),
            "RABBITMQ_PID_FILE": str(self.base / "node.pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        })
        return env

    def _as_node_user(self, argv: list[str]) -> list[str]:
        # runuser resets HOME; `env` sets it back to ours (the cookie lives there).
        return as_user(OS_USER, ["env", f"HOME={self.home}", *argv])

    def ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """`rabbitmqctl -n <node> args…` as the rabbitmq user."""
        return subprocess.run(
            self._as_node_user([str(RABBIT_BIN / "rabbitmqctl"), "-n", self.name, *args]),
            env=self._env(), capture_output=True, text=True, timeout=timeout, check=False, cwd=self.base,
        )

    def start(self, timeout: float = 90) -> None:
        """Start the node and wait until the broker is fully booted."""
        self._starts += 1
        stdout = (self.base / f"stdout-{self._starts}.log").open("ab")
        self.process = subprocess.Popen(
            self._as_node_user([str(RABBIT_BIN / "rabbitmq-server")]),
            env=self._env(), stdout=stdout, stderr=subprocess.STDOUT, cwd=self.base, start_new_session=True,
        )
        stdout.close()
        deadline = time.monotonic() + timeout
        # await_startup fails at once while the node is not yet registered with epmd.
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"rabbitmq node {self.name} exited at start-up:\n{self.log_tail()}")
            result = self.ctl("await_startup", "--timeout", "30", timeout=40)
            if result.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"rabbitmq node {self.name} did not start:\n{result.stderr}\n{self.log_tail()}")
            time.sleep(0.3)

    def stop(self) -> None:
        """Stop the node cleanly (clients see a connection.close) and wait for the process to end."""
        if self.process is None or self.process.poll() is not None:
            return
        self.ctl("stop")
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the node's whole process group."""
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(timeout=30)

    def cleanup(self) -> None:
        """Stop (or kill) the node and delete its directory."""
        try:
            self.stop()
        finally:
            self.kill()
            shutil.rmtree(self.base, ignore_errors=True)

    def list_queues(self, vhost: str = "/") -> dict[str, dict[str, int]]:
        return _parse_queues(self.ctl("-q", "list_queues", "-p", vhost, *QUEUE_COLUMNS, "--formatter", "json"))

    def log_tail(self, lines: int = 40) -> str:
        logs = sorted((self.base / "log").glob("*.log")) + sorted(self.base.glob("stdout-*.log"))
        text = "\n".join(path.read_text(errors="replace") for path in logs if path.is_file())
        return "\n".join(text.splitlines()[-lines:])


QUEUE_COLUMNS = ("name", "messages_ready", "messages_unacknowledged", "consumers")


def shared_list_queues(vhost: str) -> dict[str, dict[str, int]]:
    """Ready, unacknowledged and consumers of every queue of `vhost` on the machine's shared node."""
    return _parse_queues(subprocess.run(
        [SHARED_CTL, "-q", "list_queues", "-p", vhost, *QUEUE_COLUMNS, "--formatter", "json"],
        capture_output=True, text=True, timeout=60, check=False,
    ))


def _parse_queues(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, int]]:
    if result.returncode != 0:
        raise RuntimeError(f"rabbitmqctl list_queues failed: {result.stderr.strip()}")
    return {
        row["name"]: {
            "ready": int(row["messages_ready"]),
            "unacked": int(row["messages_unacknowledged"]),
            "consumers": int(row["consumers"]),
        }
        for row in json.loads(result.stdout or "[]")
    }
