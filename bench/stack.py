"""The benchmarked system: the Procfile's processes on a database and a redis-server of their own.

Each process runs the very command of its Procfile line (as honcho and compose run it), with
the settings of a production deployment on this machine: DEBUG off, a random SECRET_KEY,
throttles off (THROTTLE_ANON/THROTTLE_USER empty: a benchmark measures the server, not the
limit). The CPU time and peak RSS of every process group are read from /proc.
"""

import os
import re
import secrets
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg2

from stockflow.testing import (
    Process,
    RedisServer,
    Stack,
    create_database,
    drop_database,
    free_port,
    wait_until_serving,
)

BASE_DIR = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROCFILE_LINE = re.compile(r"^(?P<name>[a-z]+):\s*(?P<command>.+)$")


def procfile() -> dict[str, str]:
    lines = (BASE_DIR / "Procfile").read_text().splitlines()
    return {m["name"]: m["command"] for m in map(PROCFILE_LINE.match, lines) if m}


@dataclass(frozen=True)
class Usage:
    """CPU seconds (user + system, reaped children included) and the largest peak RSS (MB)."""

    cpu: float
    peak_rss_mb: float
    system: float = 0.0  # of which in the kernel


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # gone meanwhile
        return None
    # The command name is in parentheses and may hold spaces: split after it.
    return text[text.rindex(")") + 2 :].split()


def _peak_rss_mb(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(match[1]) / 1024 if match else 0.0


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def usage(pids: list[int]) -> Usage:
    cpu, system, rss = 0, 0, 0.0
    for pid in pids:
        fields = _stat(pid)
        if fields is None:
            continue
        # utime, stime, cutime, cstime: fields 14-17 of stat(5), 12-15 after the name.
        cpu += sum(int(f) for f in fields[11:15])
        system += int(fields[12]) + int(fields[14])
        rss = max(rss, _peak_rss_mb(pid))
    return Usage(cpu / CLOCK_TICKS, rss, system / CLOCK_TICKS)


def _pids_where(field: int, value: int) -> list[int]:
    """The processes whose stat(5) field (counted after the name: 1 ppid, 2 pgrp) is value."""
    found = []
    for pid in _pids():
        fields = _stat(pid)
        if fields is not None and int(fields[field]) == value:
            found.append(pid)
    return found


def group_pids(pgid: int) -> list[int]:
    """Every process of a process group (a Procfile process and its children)."""
    return _pids_where(2, pgid)


def children(pid: int) -> list[int]:
    return _pids_where(1, pid)


def postgres_pids() -> list[int]:
    """The PostgreSQL server's processes: the postmaster and its children (backends, WAL
    writer, checkpointer). A backend that exited counts in the postmaster's cutime."""
    found = []
    for pid in _pids():
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() in ("postgres", "postmaster"):
                found.append(pid)
        except OSError:
            continue
    return found


class BenchStack(Stack):
    """web (gunicorn), worker (celery), beat and ws (uvicorn) from the Procfile."""

    def __init__(
        self,
        workdir: Path,
        *,
        postgres: str,
        web_workers: int,
        worker_concurrency: int,
        ws_workers: int,
    ):
        self.server_url = postgres.rstrip("/")
        self.db_name = f"stockflow_bench_{uuid.uuid4().hex[:8]}"
        redis_server = RedisServer(workdir)
        self.web_port, self.ws_port = free_port(), free_port()
        env = {
            **os.environ,
            "PATH": f"{BASE_DIR / '.venv' / 'bin'}:{os.environ.get('PATH', '')}",
            "DJANGO_SETTINGS_MODULE": "stockflow.settings",
            "DATABASE_URL": f"{self.server_url}/{self.db_name}",
            "REDIS_URL": redis_server.url(0),
            "SECRET_KEY": secrets.token_urlsafe(40),
            "DEBUG": "False",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "CELERY_TASK_DEFAULT_QUEUE": "bench",
            "THROTTLE_ANON": "",
            "THROTTLE_USER": "",
            "WEB_BIND": f"127.0.0.1:{self.web_port}",
            "WEB_CONCURRENCY": str(web_workers),
            "WORKER_CONCURRENCY": str(worker_concurrency),
            "WS_HOST": "127.0.0.1",
            "WS_PORT": str(self.ws_port),
            "WS_CONCURRENCY": str(ws_workers),
            # The fan-out's clients all come from 127.0.0.1: the limit stays on (its cost is
            # part of the measure) but far above their number.
            "WS_MAX_CONNECTIONS_PER_ADDRESS": "100000",
            "BEAT_SCHEDULE_FILE": str(workdir / "beat.schedule"),
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("STOCKFLOW_DOTENV_READ", None)
        super().__init__(workdir, env, id="bench", redis_server=redis_server)
        self.url = f"http://127.0.0.1:{self.web_port}"
        self.ws_url = f"ws://127.0.0.1:{self.ws_port}"
        self.by_name: dict[str, Process] = {}

    def manage(self, *args: str) -> None:
        subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=BASE_DIR,
            env=self.env(),
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def start(self) -> None:
        create_database(self.server_url, self.db_name)
        self.redis.start()
        self.manage("migrate", "--noinput", "-v0")
        commands = procfile()
        for name in ("web", "worker", "beat", "ws"):
            process = self._start(name, ["bash", "-c", f"exec {commands[name]}"], self.env())
            self.by_name[name] = process
        wait_until_serving(self.by_name["web"], self.url)
        wait_until_serving(self.by_name["ws"], f"http://127.0.0.1:{self.ws_port}")
        self.by_name["worker"].wait_for_log("ready.")

    def serve_ceiling(self) -> tuple[Process, str]:
        """gunicorn with the web process' settings file and worker count, serving the bare
        Django view of bench/ceiling.py instead of StockFlow."""
        port = free_port()
        command = "gunicorn -c gunicorn.conf.py bench.ceiling:application"
        env = self.env(WEB_BIND=f"127.0.0.1:{port}", CEILING_REDIS_URL=self.cache_url)
        process = self._start("ceiling", ["bash", "-c", f"exec {command}"], env)
        url = f"http://127.0.0.1:{port}"
        wait_until_serving(process, url)
        return process, url

    @property
    def cache_url(self) -> str:
        return self.redis.url(1)  # settings: the cache on the database after the broker's

    def db(self):
        conn = psycopg2.connect(f"{self.server_url}/{self.db_name}")
        conn.autocommit = True
        return conn

    def usage(self) -> dict[str, Usage]:
        """CPU and peak RSS now, by role. web and worker: the whole process group (master and
        workers) for CPU, the largest worker for RSS."""
        web = self.by_name["web"].pid
        worker = self.by_name["worker"].pid
        return {
            "web": usage(group_pids(web)),
            "web_worker": usage(children(web) or [web]),
            "worker": usage(group_pids(worker)),
            "postgres": usage(postgres_pids()),
            "redis": usage([self.redis.process.pid]),
            "ws": usage(group_pids(self.by_name["ws"].pid)),
            "beat": usage(group_pids(self.by_name["beat"].pid)),
        }

    def stop(self) -> None:
        self.close()
        self.redis.stop()
        drop_database(self.server_url, self.db_name)
