"""Real processes for fault-injection tests: redis-server, gunicorn, Celery worker and beat.

Every process runs in its own process group (so a SIGKILL reaches a worker's pool children
too), writes to its own log file, and is stopped by the `Stack` that started it, also when
the test fails. Nothing here touches the shared PostgreSQL or Redis except the per-run
test database that pytest-django created.
"""

import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
import redis
import requests
from celery import Celery
from django.conf import settings
from django.db import connection

BASE_DIR = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60
STOP_TIMEOUT = 20
SETTLE_TASK = "transactions.tasks.settle_user_transactions_task"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable[[], Any], timeout: float, message: Callable[[], str] | str):
    """Poll `condition` until it is truthy and return its value; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(message() if callable(message) else message)
        time.sleep(0.05)


def require_real_services():
    if settings.SERVICES_ERROR:
        pytest.skip(f"fault tests need PostgreSQL and Redis: {settings.SERVICES_ERROR}")
    if not shutil.which("redis-server"):
        pytest.skip("fault tests need redis-server on PATH")


class Process:
    """A child process in its own process group, with stdout and stderr in `log_path`."""

    def __init__(self, name: str, command: list[str], env: dict, log_path: Path):
        self.name = name
        self.log_path = log_path
        with open(log_path, "w") as log:
            self.popen = subprocess.Popen(
                command,
                cwd=BASE_DIR,
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

    def running(self) -> bool:
        return self.popen.poll() is None

    def wait_for_log(self, needle: str, timeout: float = START_TIMEOUT):
        def seen():
            if needle in self.log():
                return True
            if not self.running():
                pytest.fail(f"{self.name} exited ({self.popen.returncode}):\n{self.log()[-4000:]}")
            return False

        wait_for(
            seen, timeout, lambda: f"{self.name} never logged {needle!r}:\n{self.log()[-4000:]}"
        )

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

    def _wait_group_gone(self, timeout: float = 10):
        # Pool children may outlive their parent for a moment; a later test must not meet them.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.killpg(self.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.02)


class RedisServer:
    """A redis-server of the test's own (no persistence), which the test may kill or freeze."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.port = free_port()
        self.process: Process | None = None
        self.generation = 0

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self):
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
                    pytest.fail(f"redis-server exited:\n{self.process.log()[-2000:]}")
                return False

        try:
            wait_for(answers, 10, "redis-server did not start")
        except BaseException:
            self.process.stop()  # the fixture's teardown never runs for a failed setup
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


class Stack:
    """The processes one test runs against the per-run test database and its own Redis.

    Each test gets a unique Celery queue and cache key prefix, so nothing it enqueues or
    caches can reach another test's processes (or the session's conftest worker).
    """

    _ids = itertools.count(1)

    def __init__(self, directory: Path, redis_server: RedisServer):
        self.directory = directory
        self.redis = redis_server
        self.id = f"{settings.RUN_ID}-{next(self._ids)}"
        self.queue = f"stockflow-faults-{self.id}"
        self.database_name = connection.settings_dict["NAME"]
        self.processes: list[Process] = []
        self._producer: Celery | None = None

    def database_url(self, application_name: str | None = None) -> str:
        url = urlsplit(settings.TEST_DATABASE_URL)._replace(path=f"/{self.database_name}")
        if application_name:
            url = url._replace(query=urlencode({"application_name": application_name}))
        return url.geturl()

    def env(self, **extra: str) -> dict:
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(self.directory),
            "DJANGO_SETTINGS_MODULE": "stockflow.settings",
            "DATABASE_URL": self.database_url(),
            "REDIS_URL": self.redis.url(0),
            "SECRET_KEY": "fault-tests-secret-key",
            "CELERY_TASK_DEFAULT_QUEUE": self.queue,
            "CACHE_KEY_PREFIX": f"stockflow-faults-{self.id}",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }
        return {**env, **extra}

    def _next_name(self, kind: str) -> str:
        return f"{kind}-{sum(1 for p in self.processes if p.name.startswith(kind + '-')) + 1}"

    def _start(self, name: str, command: list[str], env: dict) -> Process:
        process = Process(name, command, env, self.directory / f"{name}.log")
        self.processes.append(process)
        return process

    def worker(self, name: str = "worker", concurrency: int = 2, **env: str) -> Process:
        """A `celery worker` on this stack's queue; returns once it consumes."""
        command = [sys.executable, "-m", "celery", "-A", "stockflow", "worker"]
        command += ["--concurrency", str(concurrency), "--loglevel", "INFO"]
        command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        name = self._next_name(name)
        command += ["--hostname", f"{name}-{self.id}@%h"]
        process = self._start(name, command, self.env(**env))
        process.wait_for_log("ready.")
        return process

    def beat(self, **env: str) -> Process:
        """`celery beat` with its schedule file in the test's directory."""
        name = self._next_name("beat")
        command = [sys.executable, "-m", "celery", "-A", "stockflow", "beat"]
        command += ["--loglevel", "INFO", "--schedule", str(self.directory / f"{name}.schedule")]
        process = self._start(name, command, self.env(**env))
        process.wait_for_log("beat: Starting...")
        return process

    def web(self, workers: int = 2, threads: int = 4, **env: str) -> Process:
        """gunicorn serving the app; `process.url` is its base URL."""
        port = free_port()
        command = [sys.executable, "-m", "gunicorn", "stockflow.wsgi"]
        command += ["--bind", f"127.0.0.1:{port}", "--workers", str(workers)]
        command += ["--threads", str(threads), "--timeout", "30"]
        process = self._start(self._next_name("web"), command, self.env(**env))
        process.url = f"http://127.0.0.1:{port}"

        def healthy():
            if not process.running():
                pytest.fail(f"gunicorn exited:\n{process.log()[-4000:]}")
            try:
                return requests.get(f"{process.url}/health/", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_for(
            healthy, START_TIMEOUT, lambda: f"gunicorn did not serve:\n{process.log()[-4000:]}"
        )
        return process

    @property
    def producer(self) -> Celery:
        """A Celery client on this stack's broker, for sending tasks as the web side would."""
        if self._producer is None:
            # Not the current app: shared tasks in this process must keep using stockflow's.
            self._producer = Celery(
                "stockflow-faults", broker=self.redis.url(0), set_as_current=False
            )
            self._producer.conf.broker_connection_retry_on_startup = True
        return self._producer

    def send_settle(self, user_id: int, task_id: str | None = None) -> str:
        """Enqueue one settlement task for `user_id` on this stack's queue; return its id.
        The same `task_id` again is the same message again, as a broker redelivers it."""
        result = self.producer.send_task(
            SETTLE_TASK, args=[user_id], queue=self.queue, task_id=task_id
        )
        return result.id

    def logs(self, prefix: str = "") -> str:
        return "".join(p.log() for p in self.processes if p.name.startswith(prefix))

    def close(self):
        if self.redis.process is not None:
            self.redis.thaw()  # a test that failed mid-freeze: let everyone shut down cleanly
        for process in self.processes:
            process.terminate()  # all at once: shutting down one by one takes seconds each
        for process in reversed(self.processes):
            process.stop()
        if self._producer is not None:
            self._producer.close()
