"""The README's quick start and curl walkthrough, run as written against `bin/run`.

Each run is a copy of this checkout (sharing its virtualenv) with a `.env` of the test's own,
quoted values included, so a developer's `.env` is never read, overwritten or left behind.
"""

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests
from django.conf import settings
from websockets.sync.client import connect

from stockflow.testing import Process, drop_database, free_port, wait_until_serving

BASE_DIR = Path(__file__).resolve().parents[2]
START_TIMEOUT = 90
NOT_COPIED = shutil.ignore_patterns(
    ".git", ".venv", ".env", "db.sqlite3", "staticfiles", "__pycache__", ".*_cache", ".hypothesis"
)
FLOWER_LOGIN = ("ops", "readme-test-flower-password")
STAFF_PASSWORD = "readme-test-staff-password"
# Above the sum of the waits below (start 90 s, walkthrough 120 s, Flower 30 s, Ctrl-C 30 s).
pytestmark = pytest.mark.timeout(420)


def walkthrough() -> str:
    readme = (BASE_DIR / "README.md").read_text()
    block = re.search(
        r"<!-- walkthrough:start -->\n```bash\n(.*?)```\n<!-- walkthrough:end -->", readme, re.S
    )
    assert block, "README lost its walkthrough block"
    return block.group(1)


def checkout(tmp_path: Path, dotenv: str) -> Path:
    """This checkout's code under `tmp_path`, on the same virtualenv, with `dotenv` as .env."""
    root = tmp_path / "checkout"
    shutil.copytree(BASE_DIR, root, ignore=NOT_COPIED, symlinks=True)
    (root / ".venv").symlink_to(BASE_DIR / ".venv")
    (root / ".env").write_text(dotenv)
    return root


class Server:
    """`bin/run` in its own process group, stopped with Ctrl-C (SIGINT) like a person would.

    `port` is the one the checkout's .env binds to (WEB_BIND).
    """

    def __init__(self, root: Path, port: int, env: dict, log_path: Path):
        self.port = port
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**env, "PATH": os.environ["PATH"]}
        self.process = Process("bin/run", [str(root / "bin" / "run")], env, log_path, cwd=root)

    def log(self) -> str:
        return self.process.log()

    def wait_healthy(self):
        wait_until_serving(self.process, self.url, timeout=START_TIMEOUT)

    def stop(self):
        self.process.interrupt(timeout=30)


def run_walkthrough(url: str, ws_url: str | None = None, extra: dict | None = None) -> str:
    """Run the block as a user pastes it; `ws_url` is the WS= the README names for that mode,
    `extra` what else the user has in their environment (e.g. SEED_ADMIN_PASSWORD)."""
    result = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", walkthrough()],
        env={**os.environ, "API": url, **({"WS": ws_url} if ws_url else {}), **(extra or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def assert_received_the_walkthroughs_quote(quotes) -> None:
    """The two quotes the walkthrough posts (ACME), as the /ws/quotes/ client got them."""
    for close, volume in (("42.2500", 120000), ("39.8000", 80000)):
        event = json.loads(quotes.recv(timeout=10))
        assert event["event"] == "quote", event
        expected = {"ticker": "ACME", "close_price": close}
        assert {key: event["quote"][key] for key in expected} == expected, event
        assert event["quote"]["volume"] == volume, event
    with pytest.raises(TimeoutError):
        quotes.recv(timeout=0.5)


def assert_walkthrough_outcome(output: str):
    assert output.count('"status":"completed"') >= 2, output
    assert '"cash":"9577.50"' in output, output
    assert '"direction":"deposit","amount":"500.00"' in output, output
    assert '"balance":"10047.50"' in output, output
    # The limit order: open and reserving, then filled at the close.
    assert '"status":"open"' in output and '"reserved":"200.00"' in output, output
    assert '"filled_price":"39.8000"' in output, output
    assert '"status":"failed"' not in output, output
    assert '"status":"pending"' in output, output  # the submissions' own responses
    # The /ws/orders/ listener: the limit order's two events and the deposit's, numbered
    # after the market buy's and sell's four, each with its seq and created_at.
    stream = [json.loads(line) for line in output.splitlines() if line.startswith('{"event":')]
    assert [(event["event"], event["seq"]) for event in stream] == [
        ("submitted", 5),
        ("completed", 6),
        ("transfer", 7),
    ], output
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+Z", e["created_at"]) for e in stream), output
    submitted, completed, deposit = stream
    assert (submitted["order"]["status"], submitted["reserved"]) == ("open", "200.00"), output
    assert (completed["order"]["filled_price"], completed["balance"]) == ("39.8000", "9547.50"), (
        output
    )
    assert {key: deposit["transfer"][key] for key in ("direction", "amount", "balance_after")} == {
        "direction": "deposit",
        "amount": "500.00",
        "balance_after": "10047.50",
    }, output
    assert (deposit["balance"], deposit["reserved"], deposit["buying_power"]) == (
        "10047.50",
        "0.00",
        "10047.50",
    ), output
    # GET /events/?since=6: the deposit alone, as the outbox holds it.
    pages = [line for line in output.splitlines() if '"results":[{"seq":' in line]
    assert len(pages) == 1, output
    page = json.loads(pages[0])
    assert (page["count"], page["next"], page["previous"]) == (1, None, None), output
    assert [(item["seq"], item["type"]) for item in page["results"]] == [(7, "transfer")], output
    assert page["results"][0]["data"] == {
        key: deposit[key] for key in deposit if key not in ("event", "seq", "created_at")
    }, output
    assert page["results"][0]["created_at"] == deposit["created_at"], output


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
    port = free_port()
    sqlite_path = tmp_path / "db.sqlite3"
    # Quoted, as django-environ (the settings' reader) accepts them: bin/run must strip them too.
    dotenv = f"WEB_BIND=\"127.0.0.1:{port}\"\nSQLITE_PATH='{sqlite_path}'\n"
    server = Server(checkout(tmp_path, dotenv), port, base_env(tmp_path), tmp_path / "run.log")
    try:
        server.wait_healthy()
        assert requests.get(f"{server.url}/swagger/", timeout=5).status_code == 200
        # One process serves HTTP and WebSocket on WEB_BIND in this mode.
        with connect(f"ws://127.0.0.1:{port}/ws/quotes/?tickers=ACME") as quotes:
            output = run_walkthrough(server.url)
            assert_received_the_walkthroughs_quote(quotes)
    finally:
        server.stop()
    assert_walkthrough_outcome(output)
    log = server.log()
    assert "StockFlow mode: embedded (SQLite, local-memory cache" in log
    steps = re.findall(r"^==> (.*)$", log, re.M)
    assert steps[:3] == [
        "Migrating the database",
        "Collecting static files (admin, Swagger UI)",
        "Loading demo data",
    ]
    assert steps[3].startswith(f"Serving on http://127.0.0.1:{port}/ ")
    assert f"WebSockets on ws://127.0.0.1:{port}/ws/" in steps[3]
    assert sqlite_path.exists()


@pytest.mark.integration
def test_make_run_with_postgres_and_redis_runs_every_process_and_flower_sees_tasks(tmp_path):
    if settings.SERVICES_ERROR:
        pytest.skip(f"needs PostgreSQL and Redis: {settings.SERVICES_ERROR}")
    db_name = f"stockflow_readme_{settings.RUN_ID}"
    server_url = settings.TEST_DATABASE_URL.rsplit("/", 1)[0]
    port, ws_port, flower_port = free_port(), free_port(), free_port()
    # The web and flower processes get these through honcho, as django-environ reads them.
    dotenv = f'WEB_BIND="127.0.0.1:{port}"\nFLOWER_BASIC_AUTH="{":".join(FLOWER_LOGIN)}"\n'
    env = {
        **base_env(tmp_path),
        "DATABASE_URL": f"{server_url}/{db_name}",
        "REDIS_URL": settings.TEST_REDIS_URL,
        "SECRET_KEY": "readme-test-secret",
        "CELERY_TASK_DEFAULT_QUEUE": f"stockflow-readme-{settings.RUN_ID}",
        "CACHE_KEY_PREFIX": f"stockflow-readme-{settings.RUN_ID}",
        "FLOWER_PORT": str(flower_port),
        "WS_PORT": str(ws_port),
        # Pub/sub channels span Redis databases: keep this run's events to itself.
        "CHANNEL_LAYER_PREFIX": f"stockflow-readme-{settings.RUN_ID}",
        "BEAT_SCHEDULE_FILE": str(tmp_path / "beat-schedule"),
        "WEB_CONCURRENCY": "2",
        # Outside the embedded default the staff password is never the README's well-known one.
        "SEED_ADMIN_PASSWORD": STAFF_PASSWORD,
    }
    server = Server(checkout(tmp_path, dotenv), port, env, tmp_path / "run.log")
    flower_tasks = f"http://127.0.0.1:{flower_port}/api/tasks"
    try:
        server.wait_healthy()
        assert requests.get(f"{server.url}/health/", timeout=5).json()["status"] == "ok"
        wait_until_serving(server.process, f"http://127.0.0.1:{ws_port}")  # the ws process
        with connect(f"ws://127.0.0.1:{ws_port}/ws/quotes/?tickers=ACME") as quotes:
            output = run_walkthrough(
                server.url,
                f"ws://127.0.0.1:{ws_port}",
                {"SEED_ADMIN_PASSWORD": STAFF_PASSWORD},
            )
            assert_received_the_walkthroughs_quote(quotes)
        tasks = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                tasks = requests.get(flower_tasks, auth=FLOWER_LOGIN, timeout=5).json()
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
        anonymous = requests.get(flower_tasks, timeout=5)
        wrong_password = requests.get(flower_tasks, auth=("ops", "guessed"), timeout=5)
    finally:
        server.stop()
        drop_database(server_url, db_name)

    assert_walkthrough_outcome(output)
    assert len(settled) >= 2, tasks
    assert anonymous.status_code == wrong_password.status_code == 401
    log = server.log()
    for process in ("web", "ws", "worker", "beat", "flower"):
        assert re.search(rf"{process}\.1\s+\| ", log), f"no {process} output:\n{log[-3000:]}"
    assert "StockFlow mode: postgresql + Redis broker/cache" in log
    assert re.search(r"transaction_settled transaction_id=\d+ .* outcome=completed", log)
