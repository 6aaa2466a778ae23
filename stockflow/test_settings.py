"""Settings for the test suite.

Tests use DATABASE_URL/REDIS_URL when set, else the local PostgreSQL and Redis at
127.0.0.1. Each run gets its own PostgreSQL test database, Redis database numbers
(12 for the broker, 13 for the cache, unless REDIS_URL says otherwise), Celery
queue and cache key prefix. Unit tests run tasks eagerly on a local-memory cache;
the `integration` fixture switches to the real broker, cache and a worker process.
Where a service is unreachable, integration tests skip, except under CI=true.
"""

import os
import uuid

import psycopg2
import redis

RUN_ID = uuid.uuid4().hex[:8]
TEST_DATABASE_URL = os.environ.get("DATABASE_URL") or "postgres://root@127.0.0.1:5432/stockflow"
TEST_REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/12"


def _postgres_error() -> str | None:
    try:
        psycopg2.connect(
            TEST_DATABASE_URL.rsplit("/", 1)[0] + "/postgres", connect_timeout=3
        ).close()
    except psycopg2.Error as exc:
        return f"PostgreSQL at {TEST_DATABASE_URL} is unreachable: {exc}".strip()
    return None


def _redis_error() -> str | None:
    try:
        redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=2, socket_timeout=2).ping()
    except redis.RedisError as exc:
        return f"Redis at {TEST_REDIS_URL} is unreachable: {exc}"
    return None


POSTGRES_ERROR = _postgres_error() if TEST_DATABASE_URL.startswith("postgres") else "not postgres"
REDIS_ERROR = _redis_error()
SERVICES_ERROR = POSTGRES_ERROR or REDIS_ERROR
if os.environ.get("CI", "").lower() == "true" and SERVICES_ERROR:
    raise RuntimeError(f"CI=true needs PostgreSQL and Redis: {SERVICES_ERROR}")

os.environ.setdefault("SECRET_KEY", "test-only-secret-key")
os.environ["CELERY_TASK_DEFAULT_QUEUE"] = f"stockflow-test-{RUN_ID}"
os.environ["CACHE_KEY_PREFIX"] = f"stockflow-test-{RUN_ID}"
if POSTGRES_ERROR:
    os.environ.pop("DATABASE_URL", None)
    os.environ["SQLITE_PATH"] = ":memory:"
else:
    os.environ["DATABASE_URL"] = TEST_DATABASE_URL
if REDIS_ERROR:
    os.environ.pop("REDIS_URL", None)
else:
    os.environ["REDIS_URL"] = TEST_REDIS_URL

from .settings import *  # noqa: E402, F403
from .settings import CACHES as SERVICE_CACHES  # noqa: E402

if not POSTGRES_ERROR:
    DATABASES["default"]["TEST"] = {"NAME": f"test_stockflow_{RUN_ID}"}  # noqa: F405
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405

# The integration fixture swaps these back in; unit tests stay in-process.
INTEGRATION_CACHES = SERVICE_CACHES
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
CELERY_TASK_ALWAYS_EAGER = True
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
