"""The real system's processes on one database and Redis, and the databases they run on."""

import sys
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import psycopg2
from celery import Celery

from .processes import (
    ASGI_SERVER_FLAGS,
    SETTLE_TASK,
    Process,
    RedisServer,
    free_port,
    wait_until_serving,
)


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
