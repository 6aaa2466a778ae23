"""The test harness: real redis-server, Celery worker and beat, gunicorn and uvicorn processes.

Shared by the test suite (the session worker in conftest.py, the fault, outage and README
tests) and by `bench/soak.py`. Every process runs in its own process group (so a SIGKILL
reaches a worker's pool children too), writes to its own log file, and is stopped by
whoever started it, also when a test fails. Neither pytest nor Django is imported here:
the soak is a plain script, so a process that does not start, serve or stop raises
`HarnessError`, which pytest reports like any other error.
"""

from .processes import (
    ASGI_SERVER_FLAGS,
    BASE_DIR,
    HarnessError,
    Process,
    RedisServer,
    embedded_env,
    free_port,
    wait_for,
    wait_until_serving,
)
from .stack import Stack, create_database, drop_database

__all__ = [
    "ASGI_SERVER_FLAGS",
    "BASE_DIR",
    "HarnessError",
    "Process",
    "RedisServer",
    "Stack",
    "create_database",
    "drop_database",
    "embedded_env",
    "free_port",
    "wait_for",
    "wait_until_serving",
]
