"""Settings for the test suite, chosen by conftest.py's pytest_configure after it probed.

Tests use DATABASE_URL/REDIS_URL when set, else the local PostgreSQL and Redis at
127.0.0.1; the hook probes them and passes what it found here in TEST_DATABASE_URL,
TEST_REDIS_URL, TEST_POSTGRES_ERROR and TEST_REDIS_ERROR (empty: it answered). Each run
gets its own PostgreSQL test database, Redis database numbers (12 for the broker, 13 for
the cache, unless REDIS_URL says otherwise), Celery queue, cache key prefix and channel
layer prefix. Unit tests run tasks eagerly on a local-memory cache and in-memory channel
layer; the `integration` fixture switches to the real
broker, cache and a worker process. Where a service is unreachable the suite runs on
SQLite and integration tests skip, except under CI=true, where the hook stops the run.
"""

import os
import uuid

from django.core.exceptions import ImproperlyConfigured

if "TEST_DATABASE_URL" not in os.environ:
    raise ImproperlyConfigured(
        "stockflow.test_settings is chosen by conftest.py's pytest_configure once it has "
        "probed PostgreSQL and Redis: run `make test` or `python -m pytest` from the "
        "repository root, with no DJANGO_SETTINGS_MODULE or --ds."
    )

RUN_ID = uuid.uuid4().hex[:8]
TEST_DATABASE_URL = os.environ["TEST_DATABASE_URL"]
TEST_REDIS_URL = os.environ["TEST_REDIS_URL"]
POSTGRES_ERROR = os.environ.get("TEST_POSTGRES_ERROR") or None
REDIS_ERROR = os.environ.get("TEST_REDIS_ERROR") or None
SERVICES_ERROR = POSTGRES_ERROR or REDIS_ERROR

os.environ.setdefault("SECRET_KEY", "test-only-secret-key")
os.environ["CELERY_TASK_DEFAULT_QUEUE"] = f"stockflow-test-{RUN_ID}"
os.environ["CACHE_KEY_PREFIX"] = f"stockflow-test-{RUN_ID}"
# Pub/sub channels span Redis databases: a worker's events must not reach a running dev server.
os.environ["CHANNEL_LAYER_PREFIX"] = f"stockflow-test-{RUN_ID}"
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
# Consumer tests run in-process; a real-process test hands its processes REDIS_URL instead.
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
CELERY_TASK_ALWAYS_EAGER = True
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
