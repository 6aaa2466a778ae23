"""App config for transactions."""

from django.apps import AppConfig


class TransactionsConfig(AppConfig):
    name = "transactions"

    def ready(self):
        # Register the tasks in every process, web included: stocks names one of them
        # (CHECK_ORDERS_TASK) instead of importing this app.
        from . import tasks  # noqa: F401
