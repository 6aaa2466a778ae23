"""Fixtures for the outbox's real-process tests: the processes around a private redis-server."""

import itertools
import os

import pytest
from django.conf import settings

from conftest import require_services, run_database_url
from stockflow.testing import Stack

_stack_ids = itertools.count(1)


@pytest.fixture
def real_services():
    """Skips before own_redis starts a redis-server for nothing."""
    require_services()


@pytest.fixture
def stack(real_services, own_redis, transactional_db, tmp_path):
    """As transactions/tests/conftest.py's `stack`: processes on the per-run test database and
    this test's own Redis (broker, cache and channel layer), stopped before pytest-django
    flushes the database; a queue and cache prefix of its own, so nothing it enqueues
    reaches another test's processes."""
    stack_id = f"{settings.RUN_ID}-events-{next(_stack_ids)}"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "stockflow.settings",
        "DATABASE_URL": run_database_url(),
        "REDIS_URL": own_redis.url(0),
        "SECRET_KEY": "events-tests-secret-key",
        "CELERY_TASK_DEFAULT_QUEUE": f"stockflow-events-{stack_id}",
        "CACHE_KEY_PREFIX": f"stockflow-events-{stack_id}",
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }
    processes = Stack(tmp_path, env, id=stack_id, redis_server=own_redis)
    yield processes
    processes.close()
