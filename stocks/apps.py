"""App config for stocks."""

from django.apps import AppConfig


class StocksConfig(AppConfig):
    name = "stocks"

    def ready(self):
        from . import subscribers  # noqa: F401  (registers them on the event bus)
