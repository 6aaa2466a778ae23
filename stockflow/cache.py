"""Versioned read-through caching.

Each namespace (a user, the quotes) has a version number in the cache; entries are
stored under the current version. Invalidation bumps the version after the write
commits, so a reader that loaded old data just before the commit can only store it
under a version nobody reads any more. Cache errors are swallowed by django-redis
(IGNORE_EXCEPTIONS): a dead Redis means every read goes to the database.
"""

import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.transaction import on_commit

logger = logging.getLogger(__name__)


def _version_key(namespace: str) -> str:
    return f"v:{namespace}"


def _current_version(namespace: str) -> int:
    try:
        return cache.get(_version_key(namespace)) or 0
    except Exception:  # local-memory and other backends without IGNORE_EXCEPTIONS
        logger.warning("cache unavailable reading version of %s", namespace, exc_info=True)
        return 0


def cached(namespace: str, key: str, loader: Callable[[], Any]) -> Any:
    """Return the cached value for (namespace, key), loading and storing it on a miss."""
    version = _current_version(namespace)
    full_key = f"{namespace}:{version}:{key}"
    try:
        value = cache.get(full_key)
    except Exception:
        logger.warning("cache get failed for %s", full_key, exc_info=True)
        value = None
    if value is not None:
        return value
    value = loader()
    if value is not None:
        try:
            cache.set(full_key, value, settings.CACHE_TTL)
        except Exception:
            logger.warning("cache set failed for %s", full_key, exc_info=True)
    return value


def bump(namespace: str) -> None:
    key = _version_key(namespace)
    try:
        cache.incr(key)
    except ValueError:  # no version yet
        cache.set(key, 1, None)
    except Exception:
        logger.warning("cache invalidation failed for %s", namespace, exc_info=True)


def invalidate_on_commit(*namespaces: str) -> None:
    """Bump the namespaces once the surrounding database transaction commits."""
    for namespace in namespaces:
        on_commit(lambda ns=namespace: bump(ns))


def user_namespace(username: str) -> str:
    return f"user:{username}"


QUOTES_NAMESPACE = "quotes"
