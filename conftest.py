"""Shared fixtures: API clients, factories, and the real-services integration harness.

`pytest_configure` below probes PostgreSQL and Redis and only then picks the Django
settings, so nothing here imports Django models, DRF or the Celery app at module level:
those imports wait inside the fixtures until Django is set up.
"""

import itertools
import json
import os
import re
import shutil
import time
from urllib.parse import unquote, urlsplit

import psycopg2
import pytest
import redis
from asgiref.testing import ApplicationCommunicator

from stockflow.testing import RedisServer, Stack

TEST_SETTINGS = "stockflow.test_settings"
LOCAL_DATABASE_URL = "postgres://root@127.0.0.1:5432/stockflow"
LOCAL_REDIS_URL = "redis://127.0.0.1:6379/12"


def _postgres_error(url: str) -> str | None:
    if not url.startswith("postgres"):
        return "not postgres"
    try:
        psycopg2.connect(url.rsplit("/", 1)[0] + "/postgres", connect_timeout=3).close()
    except psycopg2.Error as exc:
        return f"PostgreSQL at {url} is unreachable: {exc}".strip()
    return None


def _redis_error(url: str) -> str | None:
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2).ping()
    except redis.RedisError as exc:
        return f"Redis at {url} is unreachable: {exc}"
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """Probe the services, hand the outcome to stockflow.test_settings, set Django up.

    pytest-django sets Django up in its own pytest_configure (trylast) only when the
    settings module is known earlier; pyproject.toml names none, so it waits for this one.
    """
    if config.getoption("version", 0) > 0 or config.getoption("help", False):
        return
    import django
    from django.conf import settings

    if settings.configured:
        if settings.SETTINGS_MODULE == TEST_SETTINGS:
            return  # an xdist worker: its controller probed, pytest-django set Django up
        raise pytest.UsageError(
            f"Django settings {settings.SETTINGS_MODULE} were loaded before conftest.py "
            "probed the services: unset DJANGO_SETTINGS_MODULE (or drop --ds); the suite "
            f"always runs on {TEST_SETTINGS}."
        )
    database_url = os.environ.get("DATABASE_URL") or LOCAL_DATABASE_URL
    redis_url = os.environ.get("REDIS_URL") or LOCAL_REDIS_URL
    postgres_error = _postgres_error(database_url)
    redis_error = _redis_error(redis_url)
    if os.environ.get("CI", "").lower() == "true" and (postgres_error or redis_error):
        raise pytest.UsageError(
            "CI=true needs PostgreSQL and Redis (start them, or point DATABASE_URL and "
            f"REDIS_URL at running ones): {postgres_error or redis_error}"
        )
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": TEST_SETTINGS,
            "TEST_DATABASE_URL": database_url,
            "TEST_REDIS_URL": redis_url,
            "TEST_POSTGRES_ERROR": postgres_error or "",
            "TEST_REDIS_ERROR": redis_error or "",
        }
    )
    django.setup()


def pytest_report_header(config):
    from django.conf import settings

    if not settings.configured:
        return None
    if settings.SERVICES_ERROR:
        return f"services: integration tests skip ({settings.SERVICES_ERROR})"
    return f"services: PostgreSQL {settings.TEST_DATABASE_URL}, Redis {settings.TEST_REDIS_URL}"


@pytest.fixture(autouse=True)
def _clear_local_cache():
    from django.core.cache import cache

    cache.clear()  # local-memory only: unit tests never point `cache` at Redis
    yield


@pytest.fixture
def api_client():
    from rest_framework.test import APIClient

    return APIClient()


def client_for(user):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {user.auth_token.key}")
    return client


class WebsocketCommunicator(ApplicationCommunicator):
    """An in-process WebSocket client of an ASGI application, as channels.testing's (whose
    package imports daphne and Twisted for its live-server test case, which we do not use)."""

    def __init__(self, application, path: str, headers: list | None = None):
        url = urlsplit(path)
        scope = {
            "type": "websocket",
            "path": unquote(url.path),
            "query_string": url.query.encode(),
            "headers": headers or [],
            "subprotocols": [],
        }
        super().__init__(application, scope)

    async def connect(self, timeout: float = 1) -> tuple[bool, int | None]:
        """(True, None) once accepted; (False, close code) if refused at the handshake."""
        await self.send_input({"type": "websocket.connect"})
        response = await self.receive_output(timeout)
        if response["type"] == "websocket.close":
            return False, response.get("code", 1000)
        assert response["type"] == "websocket.accept", response
        return True, None

    async def send_to(self, text_data: str):
        await self.send_input({"type": "websocket.receive", "text": text_data})

    async def receive_json_from(self, timeout: float = 1):
        response = await self.receive_output(timeout)
        assert response["type"] == "websocket.send", response
        return json.loads(response["text"])

    async def disconnect(self, code: int = 1000, timeout: float = 1):
        await self.send_input({"type": "websocket.disconnect", "code": code})
        await self.wait(timeout)


@pytest.fixture
def user(db):
    from users.tests.factories import UserFactory

    return UserFactory()


@pytest.fixture
def staff(db):
    from users.tests.factories import UserFactory

    return UserFactory(is_staff=True, username="operator")


@pytest.fixture
def user_client(user):
    return client_for(user)


@pytest.fixture
def staff_client(staff):
    return client_for(staff)


@pytest.fixture
def quote(db):
    from stocks.tests.factories import StockDataFactory

    return StockDataFactory(ticker="AAPL", close_price="150.0000")


# --- integration: real PostgreSQL, Redis and Celery processes (stockflow/testing/) ---------


def require_services():
    from django.conf import settings

    if settings.SERVICES_ERROR:
        pytest.skip(f"integration test needs PostgreSQL and Redis: {settings.SERVICES_ERROR}")


def run_database_url() -> str:
    """TEST_DATABASE_URL on the database pytest-django created for this run."""
    from django.conf import settings
    from django.db import connection

    path = "/" + connection.settings_dict["NAME"]
    return urlsplit(settings.TEST_DATABASE_URL)._replace(path=path).geturl()


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of this test's own on a free port, which the test may kill or freeze;
    stopped even when the test fails."""
    if not shutil.which("redis-server"):
        pytest.skip("needs redis-server on PATH")
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def real_services():
    """Skips before own_redis starts a redis-server for nothing."""
    require_services()


_stack_ids = itertools.count(1)


@pytest.fixture
def stack(real_services, own_redis, transactional_db, tmp_path):
    """The real system's processes (stockflow.testing.Stack) on the per-run test database and
    this test's own Redis, stopped before pytest-django flushes the database.

    Each test gets a unique Celery queue and cache key prefix, so nothing it enqueues or
    caches can reach another test's processes (or the session's conftest worker).
    """
    from django.conf import settings

    stack_id = f"{settings.RUN_ID}-{next(_stack_ids)}"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "stockflow.settings",
        "DATABASE_URL": run_database_url(),
        "REDIS_URL": own_redis.url(0),
        "SECRET_KEY": "real-process-tests-secret-key",
        "CELERY_TASK_DEFAULT_QUEUE": f"stockflow-stack-{stack_id}",
        "CACHE_KEY_PREFIX": f"stockflow-stack-{stack_id}",
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }
    processes = Stack(tmp_path, env, id=stack_id, redis_server=own_redis)
    yield processes
    processes.close()


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker, tmp_path_factory):
    """A real `celery worker` on this run's queue, test database and Redis databases."""
    require_services()
    from django.conf import settings

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "stockflow.settings",
        "DATABASE_URL": run_database_url(),
        "REDIS_URL": settings.TEST_REDIS_URL,
        "CELERY_TASK_DEFAULT_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,
        "CACHE_KEY_PREFIX": settings.CACHE_KEY_PREFIX,
        "DB_CONN_MAX_AGE": "0",
    }
    processes = Stack(tmp_path_factory.mktemp("worker"), env, id=settings.RUN_ID)
    try:
        yield processes.worker(hostname=f"test-{settings.RUN_ID}@%h")
    finally:
        processes.close()


@pytest.fixture
def integration(celery_worker_process, transactional_db, settings):
    """Real broker and Redis cache for this test; tasks go to the worker process."""
    from stockflow.celery import app as celery_app

    settings.CACHES = settings.INTEGRATION_CACHES
    # The namespaced key: Celery resolves `task_always_eager` from CELERY_TASK_ALWAYS_EAGER
    # (the Django setting) before the plain name, so only this spelling takes effect.
    celery_app.conf.CELERY_TASK_ALWAYS_EAGER = False
    assert celery_app.conf.task_always_eager is False
    yield celery_worker_process
    celery_app.conf.CELERY_TASK_ALWAYS_EAGER = True
    # The flush after a transactional test TRUNCATEs every table: a settlement still
    # running in the worker would deadlock with it, so let the worker go idle first.
    wait_until_worker_idle(celery_worker_process)


TASK_RECEIVED = re.compile(r"\] received$", re.M)
TASK_FINISHED = re.compile(r"\] (succeeded in|raised|retry:|ignored)", re.M)
WORKER_IDLE_TIMEOUT = 60


def wait_until_worker_idle(worker) -> None:
    """Wait until this run's queue is empty and every task the worker received finished."""
    from django.conf import settings

    broker = redis.Redis.from_url(settings.TEST_REDIS_URL)
    queue = settings.CELERY_TASK_DEFAULT_QUEUE
    deadline = time.monotonic() + WORKER_IDLE_TIMEOUT
    quiet_polls = 0
    while quiet_polls < 3:  # idle three polls in a row: nothing was in flight between them
        log = worker.log_path.read_text()
        queued = sum(broker.llen(key) for key in broker.scan_iter(match=f"{queue}*"))
        idle = not queued and len(TASK_RECEIVED.findall(log)) <= len(TASK_FINISHED.findall(log))
        quiet_polls = quiet_polls + 1 if idle else 0
        if time.monotonic() > deadline:
            pytest.fail(f"the worker did not go idle in {WORKER_IDLE_TIMEOUT}s")
        time.sleep(0.1)
