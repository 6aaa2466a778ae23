"""The README's quick start and curl walkthrough, run as written against `bin/run`."""

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import psycopg2
import pytest
import requests
from django.conf import settings

BASE_DIR = Path(__file__).resolve().parents[2]
START_TIMEOUT = 90


def walkthrough() -> str:
    readme = (BASE_DIR / "README.md").read_text()
    block = re.search(
        r"<!-- walkthrough:start -->\n```bash\n(.*?)```\n<!-- walkthrough:end -->", readme, re.S
    )
    assert block, "README lost its walkthrough block"
    return block.group(1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`bin/run` in its own process group, stopped with Ctrl-C (SIGINT) like a person would."""

    def __init__(self, env: dict, log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = {**env, "WEB_BIND": f"127.0.0.1:{self.port}", "PATH": os.environ["PATH"]}
        with open(log_path, "w") as log:
            self.process = subprocess.Popen(
                [str(BASE_DIR / "bin" / "run")],
                cwd=BASE_DIR,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_healthy(self):
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"bin/run exited:\n{self.log()[-4000:]}"
            try:
                if requests.get(f"{self.url}/health/", timeout=10).status_code == 200:
                    return
            except requests.RequestException:  # not listening yet, or still booting
                pass
            time.sleep(0.3)
        pytest.fail(f"bin/run did not serve in {START_TIMEOUT}s:\n{self.log()[-4000:]}")

    def stop(self):
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            pytest.fail("Ctrl-C did not stop bin/run within 30s")


def run_walkthrough(url: str) -> str:
    result = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", walkthrough()],
        env={**os.environ, "API": url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def assert_walkthrough_outcome(output: str):
    assert output.count('"status":"completed"') >= 2, output
    assert '"cash":"9577.50"' in output, output
    assert '"balance":"9746.50"' in output, output
    assert '"status":"failed"' not in output, output
    assert '"status":"pending"' in output, output  # the submissions' own responses


def base_env(tmp_path: Path) -> dict:
    return {
        "HOME": str(tmp_path),
        "STATIC_ROOT": str(tmp_path / "static"),
        "LOG_LEVEL": "INFO",
        # Present but empty: a developer's .env must not switch the mode under test.
        "DATABASE_URL": "",
        "REDIS_URL": "",
    }


def test_make_run_on_embedded_defaults_serves_the_walkthrough(tmp_path):
    env = {**base_env(tmp_path), "SQLITE_PATH": str(tmp_path / "db.sqlite3")}
    server = Server(env, tmp_path / "run.log")
    try:
        server.wait_healthy()
        assert requests.get(f"{server.url}/swagger/", timeout=5).status_code == 200
        output = run_walkthrough(server.url)
    finally:
        server.stop()
    assert_walkthrough_outcome(output)
    assert "StockFlow mode: embedded (SQLite, local-memory cache" in server.log()


@pytest.mark.integration
def test_make_run_with_postgres_and_redis_runs_every_process_and_flower_sees_tasks(tmp_path):
    if settings.SERVICES_ERROR:
        pytest.skip(f"needs PostgreSQL and Redis: {settings.SERVICES_ERROR}")
    db_name = f"stockflow_readme_{settings.RUN_ID}"
    server_url = settings.TEST_DATABASE_URL.rsplit("/", 1)[0]
    flower_port = free_port()
    env = {
        **base_env(tmp_path),
        "DATABASE_URL": f"{server_url}/{db_name}",
        "REDIS_URL": settings.TEST_REDIS_URL,
        "SECRET_KEY": "readme-test-secret",
        "CELERY_TASK_DEFAULT_QUEUE": f"stockflow-readme-{settings.RUN_ID}",
        "CACHE_KEY_PREFIX": f"stockflow-readme-{settings.RUN_ID}",
        "FLOWER_PORT": str(flower_port),
        "FLOWER_UNAUTHENTICATED_API": "true",
        "BEAT_SCHEDULE_FILE": str(tmp_path / "beat-schedule"),
        "WEB_CONCURRENCY": "2",
    }
    server = Server(env, tmp_path / "run.log")
    try:
        server.wait_healthy()
        assert requests.get(f"{server.url}/health/", timeout=5).json()["status"] == "ok"
        output = run_walkthrough(server.url)
        tasks = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                tasks = requests.get(f"http://127.0.0.1:{flower_port}/api/tasks", timeout=5).json()
            except requests.RequestException:
                tasks = {}
            settled = [
                t
                for t in tasks.values()
                if t["name"] == "transactions.tasks.settle_user_transactions_task"
                and t["state"] == "SUCCESS"
            ]
            if len(settled) >= 2:
                break
            time.sleep(0.5)
    finally:
        server.stop()
        conn = psycopg2.connect(f"{server_url}/postgres")
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        conn.close()

    assert_walkthrough_outcome(output)
    assert len(settled) >= 2, tasks
    log = server.log()
    for process in ("web", "worker", "beat", "flower"):
        assert re.search(rf"{process}\.1\s+\| ", log), f"no {process} output:\n{log[-3000:]}"
    assert "StockFlow mode: postgresql + Redis broker/cache" in log
    assert re.search(r"transaction_settled transaction_id=\d+ .* outcome=completed", log)
