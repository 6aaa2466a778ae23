"""App config for transactions."""

from django.apps import AppConfig


class TransactionsConfig(AppConfig):
    name = "transactions"

    def ready(self):
        from . import subscribers  # noqa: F401  (registers them on the event bus)
