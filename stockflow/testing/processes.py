"""One process of the harness, a redis-server of a test's own, and waiting for either."""

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
import requests

BASE_DIR = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60
STOP_TIMEOUT = 20
SETTLE_TASK = "transactions.tasks.settle_user_transactions_task"
# The Procfile's `ws` process runs uvicorn with these (and bin/run's embedded mode too).
ASGI_SERVER_FLAGS = [
    "--workers",
    "1",
    "--ws",
    "websockets-sansio",
    "--lifespan",
    "off",
    "--no-proxy-headers",
]


class HarnessError(Exception):
    """A process did not start, serve or stop in time, or a condition never came true."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def embedded_env(directory: Path, **extra: str) -> dict[str, str]:
    """The environment of a server process on the embedded defaults (SQLite in `directory`),
    whatever a developer's .env says: DATABASE_URL and REDIS_URL are present but empty."""
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(directory),
        "DATABASE_URL": "",
        "REDIS_URL": "",
        "SQLITE_PATH": str(directory / "db.sqlite3"),
        "STATIC_ROOT": str(directory / "static"),
        **extra,
    }


def wait_for(condition: Callable[[], Any], timeout: float, message: Callable[[], str] | str):
    """Poll `condition` until it is truthy and return its value; HarnessError at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise HarnessError(message() if callable(message) else message)
        time.sleep(0.05)


class Process:
    """A child process in its own process group, with stdout and stderr in `log_path`."""

    def __init__(
        self, name: str, command: list[str], env: dict, log_path: Path, cwd: Path = BASE_DIR
    ):
        self.name = name
        self.log_path = log_path
        # Appended to: a process restarted under the same log file keeps its history.
        with open(log_path, "a") as log:
            self.popen = subprocess.Popen(
                command,
                cwd=cwd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, size: int = 4000) -> str:
        return self.log()[-size:]

    def running(self) -> bool:
        return self.popen.poll() is None

    def exited(self) -> str:
        return f"{self.name} exited ({self.popen.returncode}):\n{self.tail()}"

    def wait_for_log(self, needle: str, timeout: float = START_TIMEOUT):
        def seen():
            if needle in self.log():
                return True
            if not self.running():
                raise HarnessError(self.exited())
            return False

        wait_for(seen, timeout, lambda: f"{self.name} never logged {needle!r}:\n{self.tail()}")

    def signal_group(self, sig: int):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    def kill(self):
        """SIGKILL the whole group: the main process and every child, no cleanup at all."""
        self.signal_group(signal.SIGKILL)
        self.popen.wait()
        self._wait_group_gone()

    def terminate(self):
        """Ask for a clean exit: SIGTERM to the main process only (a Celery warm shutdown;
        a pool child that got SIGTERM itself would die mid-task)."""
        if self.running():
            self.signal_group(signal.SIGCONT)  # a frozen process cannot handle SIGTERM
            self.popen.terminate()

    def stop(self):
        """Terminate, wait up to STOP_TIMEOUT, then SIGKILL whatever is left of the group."""
        self.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=STOP_TIMEOUT)
        self.signal_group(signal.SIGKILL)
        self.popen.wait()
        self._wait_group_gone()

    def interrupt(self, timeout: float):
        """Ctrl-C as a terminal sends it, SIGINT to the whole group; if that does not stop the
        process within `timeout` seconds, SIGKILL the group and raise HarnessError."""
        self.signal_group(signal.SIGINT)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise HarnessError(f"Ctrl-C did not stop {self.name} within {timeout:.0f}s") from None

    def _wait_group_gone(self, timeout: float = 10):
        # Pool children may outlive their parent for a moment; a later test must not meet them.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.killpg(self.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.02)


def wait_until_serving(process: Process, base_url: str, timeout: float = START_TIMEOUT):
    """Poll `base_url`/health/ until it answers 200; HarnessError if the process exits first."""

    def healthy():
        if not process.running():
            raise HarnessError(process.exited())
        try:
            return requests.get(f"{base_url}/health/", timeout=10).status_code == 200
        except requests.RequestException:  # not listening yet, or still booting
            return False

    wait_for(
        healthy,
        timeout,
        lambda: f"{process.name} did not serve in {timeout:.0f}s:\n{process.tail()}",
    )


class RedisServer:
    """A redis-server of its own (no persistence) on a free port, which may be killed or frozen."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.port = free_port()
        self.process: Process | None = None
        self.generation = 0

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self):
        """Start it (again, on the same port) and return once it answers PING."""
        self.generation += 1
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        log_path = self.directory / f"redis-{self.generation}.log"
        self.process = Process("redis-server", command, dict(os.environ), log_path)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5, socket_timeout=0.5)

        def answers():
            try:
                return client.ping()
            except redis.RedisError:
                if not self.process.running():
                    raise HarnessError(self.process.exited()) from None
                return False

        try:
            wait_for(answers, 10, "redis-server did not start")
        except BaseException:
            self.process.stop()  # a fixture's teardown never runs for a failed setup
            raise
        finally:
            client.close()

    def kill(self):
        assert self.process is not None
        self.process.kill()

    def freeze(self):
        """SIGSTOP: the port still accepts connections, but nothing is ever answered."""
        assert self.process is not None
        self.process.signal_group(signal.SIGSTOP)

    def thaw(self):
        assert self.process is not None
        self.process.signal_group(signal.SIGCONT)

    def stop(self):
        if self.process is not None:
            self.process.stop()
