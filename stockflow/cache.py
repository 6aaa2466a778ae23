"""Versioned read-through caching.

Each namespace (a user, the quotes) has a version number in the cache; entries are
stored under the current version (`cached_json` keeps responses rendered, read in one
Redis round trip). Invalidation bumps the version after the write
commits, so a reader that loaded old data just before the commit can only store it
under a version nobody reads any more. Cache errors are logged and swallowed (by
django-redis' IGNORE_EXCEPTIONS, and by `cached_json` for its script): a dead Redis means
every read goes to the database.
"""

import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.transaction import on_commit
from redis.exceptions import RedisError
from rest_framework.renderers import JSONRenderer

from .text import canonical_username

logger = logging.getLogger(__name__)

# The namespace's version, then the entry stored under it: one round trip for a hit.
VERSIONED_GET = """
local version = redis.call('GET', KEYS[1]) or '0'
return {version, redis.call('GET', ARGV[1] .. version .. ARGV[2])}
"""
_script = []  # the registered Script (its SHA), made once per process


def _versioned_get(client):
    if not _script:
        _script.append(client.register_script(VERSIONED_GET))
    return _script[0]


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


def cached_json(namespace: str, key: str, loader: Callable[[], Any]) -> bytes | None:
    """The API's JSON bytes for (namespace, key), stored rendered: a hit on Redis is one
    round trip (a script reads the version and the entry) and no serialising at all. On a
    miss `loader()` gives the response data (None: nothing to cache), rendered once by the
    REST framework's JSONRenderer and stored under the version read. Redis errors are logged
    and the data comes from `loader` (the database), as django-redis does for `cached`."""
    client = _redis_client()
    if client is None:  # the local-memory cache (embedded mode, unit tests)
        return cached(namespace, f"{key}:json", lambda: _render(loader()))
    try:
        version, body = _versioned_get(client)(
            keys=[cache.make_key(_version_key(namespace))],
            args=[cache.make_key(f"{namespace}:"), f":{key}:json"],
            client=client,
        )
    except RedisError as error:
        logger.warning("cache_read_failed namespace=%s error=%s", namespace, error)
        return _render(loader())
    if body is not None:
        return body
    body = _render(loader())
    if body is not None:
        entry = cache.make_key(f"{namespace}:{version.decode()}:{key}:json")
        try:
            client.set(entry, body, ex=settings.CACHE_TTL)
        except RedisError as error:
            logger.warning("cache_write_failed namespace=%s error=%s", namespace, error)
    return body


def _render(data: Any) -> bytes | None:
    return None if data is None else JSONRenderer().render(data)


def _redis_client():
    """django-redis' own client (its pool, its socket timeouts), or None for another cache."""
    get_client = getattr(getattr(cache, "client", None), "get_client", None)
    return get_client(write=True) if get_client else None


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
    # Every spelling of a name that finds the account (users.models: its canonical form) is
    # the same cache namespace, or a change would leave another spelling's entry stale.
    return f"user:{canonical_username(username)}"


QUOTES_NAMESPACE = "quotes"
