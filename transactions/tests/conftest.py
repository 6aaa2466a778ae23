"""Fixtures for the fault-injection tests: a private redis-server and the processes around it."""

import pytest

from .processes import RedisServer, Stack, require_real_services


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of this test's own on a free port; stopped even when the test fails."""
    require_real_services()
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def stack(own_redis, transactional_db, tmp_path):
    """Processes on the per-run test database; stopped before pytest-django flushes it."""
    processes = Stack(tmp_path, own_redis)
    yield processes
    processes.close()
