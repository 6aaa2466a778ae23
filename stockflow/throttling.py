"""A throttle on failed password logins (token endpoint and admin), against guessing.

Only failures count, per client address, so clients that log in correctly are never
slowed down; past the rate, further attempts get 429 with Retry-After until the
oldest failure leaves the window.
"""

import math

from rest_framework.throttling import SimpleRateThrottle


class FailedLoginThrottle(SimpleRateThrottle):
    scope = "login_failures"

    def get_cache_key(self, request, view=None):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def is_blocked(self, request) -> bool:
        if self.rate is None:  # switched off in settings
            return False
        self.key = self.get_cache_key(request)
        self.history = self.cache.get(self.key, []) or []
        self.now = self.timer()
        while self.history and self.history[-1] <= self.now - self.duration:
            self.history.pop()
        return len(self.history) >= self.num_requests

    def record_failure(self, request) -> None:
        if self.rate is None:
            return
        self.is_blocked(request)
        self.throttle_success()

    def retry_after(self) -> int:
        return max(1, math.ceil(self.wait() or 1))
