"""Shared fixtures: API clients, factories, and the real-services integration harness."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
from django.conf import settings
from django.core.cache import cache
from rest_framework.test import APIClient

from stockflow.celery import app as celery_app
from stocks.tests.factories import StockDataFactory
from users.tests.factories import UserFactory

BASE_DIR = Path(__file__).resolve().parent
WORKER_READY_TIMEOUT = 60


@pytest.fixture(autouse=True)
def _clear_local_cache():
    cache.clear()  # local-memory only: unit tests never point `cache` at Redis
    yield


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


def client_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {user.auth_token.key}")
    return client


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def staff(db):
    return UserFactory(is_staff=True, username="operator")


@pytest.fixture
def user_client(user) -> APIClient:
    return client_for(user)


@pytest.fixture
def staff_client(staff) -> APIClient:
    return client_for(staff)


@pytest.fixture
def quote(db):
    return StockDataFactory(ticker="AAPL", close_price="150.0000")


# --- integration: real PostgreSQL, Redis and a Celery worker process ------------------------


def _require_services():
    if settings.SERVICES_ERROR:
        pytest.skip(f"integration test needs PostgreSQL and Redis: {settings.SERVICES_ERROR}")


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker, tmp_path_factory):
    """A real `celery worker` on this run's queue, test database and Redis databases."""
    _require_services()
    from django.db import connection

    db_url = urlsplit(settings.TEST_DATABASE_URL)._replace(
        path="/" + connection.settings_dict["NAME"]
    )
    log_path = tmp_path_factory.mktemp("worker") / "worker.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "stockflow.settings",
        "DATABASE_URL": db_url.geturl(),
        "REDIS_URL": settings.TEST_REDIS_URL,
        "CELERY_TASK_DEFAULT_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,
        "CACHE_KEY_PREFIX": settings.CACHE_KEY_PREFIX,
        "DB_CONN_MAX_AGE": "0",
    }
    command = [
        *(sys.executable, "-m", "celery", "-A", "stockflow", "worker"),
        *("--concurrency", "2", "--loglevel", "INFO"),
        *("--without-gossip", "--without-mingle", "--without-heartbeat"),
        *("--hostname", f"test-{settings.RUN_ID}@%h"),
    ]
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=BASE_DIR, env=env, stdout=log, stderr=log)
    deadline = time.monotonic() + WORKER_READY_TIMEOUT
    while "ready." not in log_path.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"celery worker did not start:\n{log_path.read_text()[-4000:]}")
        time.sleep(0.2)
    process.log_path = log_path
    yield process
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture
def integration(celery_worker_process, transactional_db, settings):
    """Real broker and Redis cache for this test; tasks go to the worker process."""
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
