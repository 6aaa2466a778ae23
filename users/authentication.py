"""Token authentication with the token -> account lookup cached.

DRF's TokenAuthentication joins the token and its user in PostgreSQL on every request. Here
a read's hit is one cache read: the few fields that authorisation needs (id, username, is_active,
is_staff, is_superuser), loaded into a `User` whose other fields are deferred, so reading
`balance` from it queries the database rather than trusting a copy: nothing about money is
decided from this cache. The entry is keyed by a hash of the token, not the token itself,
and is deleted when the token is deleted or its user saved or deleted (`users.signals`), at
once and again after the commit; CACHE_TTL bounds what a racing reader could keep.
"""

import hashlib

from django.conf import settings
from django.core.cache import cache
from rest_framework.authentication import TokenAuthentication
from rest_framework.permissions import SAFE_METHODS

from .models import User

# In the model's field order, as Model.from_db wants the values of a partial row.
FIELDS = tuple(
    f.attname
    for f in User._meta.concrete_fields
    if f.attname in {"id", "username", "is_active", "is_staff", "is_superuser"}
)


def token_cache_key(key: str) -> str:
    return "auth:token:" + hashlib.sha256(key.encode()).hexdigest()


class CachedTokenAuthentication(TokenAuthentication):
    """Reads (GET, HEAD, OPTIONS) use the cache; a write authenticates against the database,
    so it never acts for an account deactivated a moment ago, and gets the whole account row
    in the same query (a submission's event states the balance)."""

    def authenticate(self, request):
        # DRF makes an authenticator per request: this is this request's method.
        self.cached = request.method in SAFE_METHODS
        return super().authenticate(request)

    def authenticate_credentials(self, key):
        if not getattr(self, "cached", False):
            return super().authenticate_credentials(key)
        cache_key = token_cache_key(key)
        values = cache.get(cache_key)
        if values is None:
            user, token = super().authenticate_credentials(key)  # 401 as DRF answers it
            cache.set(cache_key, [getattr(user, name) for name in FIELDS], settings.CACHE_TTL)
            return user, token
        user = User.from_db("default", FIELDS, values)
        if not user.is_active:  # stored before a deactivation committed: ask the database
            cache.delete(cache_key)
            return super().authenticate_credentials(key)
        return user, None
