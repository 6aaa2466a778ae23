"""App config for transactions."""

from django.apps import AppConfig


class TransactionsConfig(AppConfig):
    name = "transactions"
