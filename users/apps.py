"""App config for users."""

from django.apps import AppConfig


class UsersConfig(AppConfig):
    name = "users"

    def ready(self):
        from . import signals  # noqa: F401  (connects the token cache's invalidation)
