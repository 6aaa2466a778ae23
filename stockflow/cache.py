"""Versioned read-through caching.

Each namespace (a user, the quotes) has a version number in the cache; entries are
stored under the current version. Invalidation bumps the version after the write
commits, so a reader that loaded old data just before the commit can only store it
under a version nobody reads any more. Cache errors are logged and swallowed by
django-redis (IGNORE_EXCEPTIONS), not here: a dead Redis means every read goes to the
database.
"""

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.transaction import on_commit


def _version_key(namespace: str) -> str:
    return f"v:{namespace}"


def cached(namespace: str, key: str, loader: Callable[[], Any]) -> Any:
    """Return the cached value for (namespace, key), loading and storing it on a miss."""
    full_key = f"{namespace}:{cache.get(_version_key(namespace)) or 0}:{key}"
    value = cache.get(full_key)
    if value is None:
        value = loader()
        if value is not None:
            cache.set(full_key, value, settings.CACHE_TTL)
    return value


def bump(namespace: str) -> None:
    key = _version_key(namespace)
    try:
        cache.incr(key)
    except ValueError:  # no version yet
        cache.set(key, 1, None)


def invalidate_on_commit(*namespaces: str) -> None:
    """Bump the namespaces once the surrounding database transaction commits."""
    for namespace in namespaces:
        on_commit(lambda ns=namespace: bump(ns))


def user_namespace(username: str) -> str:
    # Any case of a name is the same account, so it is the same cache namespace.
    return f"user:{username.lower()}"


QUOTES_NAMESPACE = "quotes"
