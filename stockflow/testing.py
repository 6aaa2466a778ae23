"""The test harness: real redis-server, Celery worker and beat, gunicorn and uvicorn processes.

Shared by the test suite (the session worker in conftest.py, the fault, outage and README
tests) and by `bench/soak.py`. Every process runs in its own process group (so a SIGKILL
reaches a worker's pool children too), writes to its own log file, and is stopped by
whoever started it, also when a test fails. Neither pytest nor Django is imported here:
the soak is a plain script, so a process that does not start, serve or stop raises
`HarnessError`, which pytest reports like any other error.
"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import psycopg2
import redis
import requests
from celery import Celery

BASE_DIR = Path(__file__).resolve().parent.parent
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


class Stack:
    """The processes of the real system (Celery workers, beat, gunicorn, uvicorn) on one
    database and one Redis, with their logs in `directory`; `close()` stops every one of them.

    `env` is every process's environment: it names the settings module, DATABASE_URL,
    REDIS_URL and CELERY_TASK_DEFAULT_QUEUE at least. `redis_server`, when the stack runs on
    a RedisServer of its own, is thawed before the processes stop; stopping it is the owner's.
    """

    def __init__(
        self,
        directory: Path,
        env: dict[str, str],
        *,
        id: str,
        redis_server: RedisServer | None = None,
    ):
        self.directory = directory
        self.base_env = env
        self.id = id
        self.redis = redis_server
        self.queue = env["CELERY_TASK_DEFAULT_QUEUE"]
        self.processes: list[Process] = []
        self._producer: Celery | None = None

    @property
    def database_name(self) -> str:
        return urlsplit(self.base_env["DATABASE_URL"]).path.lstrip("/")

    def database_url(self, application_name: str | None = None) -> str:
        url = urlsplit(self.base_env["DATABASE_URL"])
        if application_name:
            url = url._replace(query=urlencode({"application_name": application_name}))
        return url.geturl()

    def env(self, **extra: str) -> dict:
        return {**self.base_env, **extra}

    def _next_name(self, kind: str) -> str:
        return f"{kind}-{sum(1 for p in self.processes if p.name.startswith(kind + '-')) + 1}"

    def _start(self, name: str, command: list[str], env: dict) -> Process:
        process = Process(name, command, env, self.directory / f"{name}.log")
        self.processes.append(process)
        return process

    def worker(
        self,
        name: str = "worker",
        concurrency: int = 2,
        *,
        hostname: str | None = None,
        loglevel: str = "INFO",
        isolated: bool = True,
        wait: bool = True,
        **env: str,
    ) -> Process:
        """A `celery worker` on this stack's queue; with `wait`, returns once it consumes
        (it logs "ready." at INFO). `isolated` turns off gossip, mingle and heartbeat: a
        test's worker neither waits for nor talks to other workers on a shared broker."""
        command = [sys.executable, "-m", "celery", "-A", "stockflow", "worker"]
        command += ["--concurrency", str(concurrency), "--loglevel", loglevel]
        if isolated:
            command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        name = self._next_name(name)
        command += ["--hostname", hostname or f"{name}-{self.id}@%h"]
        process = self._start(name, command, self.env(**env))
        if wait:
            process.wait_for_log("ready.")
        return process

    def beat(self, *, loglevel: str = "INFO", wait: bool = True, **env: str) -> Process:
        """`celery beat` with its schedule file in the stack's directory; with `wait`,
        returns once it started (logged at INFO)."""
        name = self._next_name("beat")
        command = [sys.executable, "-m", "celery", "-A", "stockflow", "beat"]
        command += ["--loglevel", loglevel, "--schedule", str(self.directory / f"{name}.schedule")]
        process = self._start(name, command, self.env(**env))
        if wait:
            process.wait_for_log("beat: Starting...")
        return process

    def web(
        self,
        workers: int = 2,
        threads: int = 4,
        *,
        timeout: int = 30,
        wait: bool = True,
        **env: str,
    ) -> Process:
        """gunicorn serving the app on a free port; `process.url` is its base URL. With
        `wait`, returns once /health/ answers 200."""
        port = free_port()
        command = [sys.executable, "-m", "gunicorn", "stockflow.wsgi"]
        command += ["--bind", f"127.0.0.1:{port}", "--workers", str(workers)]
        command += ["--threads", str(threads), "--timeout", str(timeout)]
        process = self._start(self._next_name("web"), command, self.env(**env))
        process.url = f"http://127.0.0.1:{port}"
        if wait:
            wait_until_serving(process, process.url)
        return process

    def ws(self, *, wait: bool = True, **env: str) -> Process:
        """uvicorn serving stockflow.asgi (HTTP and the /ws/ routes) on a free port, with the
        Procfile's `ws` flags; `process.url` is its http:// base URL, `process.ws_url` its
        ws:// one. With `wait`, returns once /health/ answers 200 through the ASGI app."""
        port = free_port()
        command = [sys.executable, "-m", "uvicorn", "stockflow.asgi:application"]
        command += ["--host", "127.0.0.1", "--port", str(port), *ASGI_SERVER_FLAGS]
        process = self._start(self._next_name("ws"), command, self.env(**env))
        process.url = f"http://127.0.0.1:{port}"
        process.ws_url = f"ws://127.0.0.1:{port}"
        if wait:
            wait_until_serving(process, process.url)
        return process

    @property
    def producer(self) -> Celery:
        """A Celery client on this stack's broker, for sending tasks as the web side would."""
        if self._producer is None:
            # Not the current app: shared tasks in this process must keep using stockflow's.
            self._producer = Celery(
                "stockflow-harness", broker=self.base_env["REDIS_URL"], set_as_current=False
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
        if self.redis is not None and self.redis.process is not None:
            self.redis.thaw()  # a test that failed mid-freeze: let everyone shut down cleanly
        for process in self.processes:
            process.terminate()  # all at once: shutting down one by one takes seconds each
        for process in reversed(self.processes):
            process.stop()
        if self._producer is not None:
            self._producer.close()


def _server_connection(server_url: str):
    conn = psycopg2.connect(f"{server_url.rstrip('/')}/postgres")
    conn.autocommit = True
    return conn


def create_database(server_url: str, name: str):
    """CREATE DATABASE `name` on the PostgreSQL server at `server_url` (a URL without a path)."""
    conn = _server_connection(server_url)
    try:
        with conn.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()


def drop_database(server_url: str, name: str):
    """DROP DATABASE `name` if it exists, disconnecting whoever still uses it."""
    conn = _server_connection(server_url)
    try:
        with conn.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        conn.close()
