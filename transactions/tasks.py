"""Celery tasks: thin wrappers that take ids and call one service."""

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

from .services import (
    orders_check_for_ticker,
    orders_expire_due,
    transactions_requeue_stale,
    transactions_settle_for_user,
)

# Deadlocks, serialization failures and dropped connections are transient: retry.
TRANSIENT_DB_ERRORS = (OperationalError, InterfaceError)
RETRY_TRANSIENT = {
    "autoretry_for": TRANSIENT_DB_ERRORS,
    "retry_backoff": 0.5,
    "retry_backoff_max": 10,
    "retry_jitter": True,
    "max_retries": 10,
}


@shared_task(**RETRY_TRANSIENT)
def settle_user_transactions_task(user_id: int) -> int:
    return len(transactions_settle_for_user(user_id=user_id))


@shared_task(**RETRY_TRANSIENT)
def check_orders_task(ticker: str) -> int:
    """Named by `stocks.services.CHECK_ORDERS_TASK`: quotes were stored for `ticker`."""
    return len(orders_check_for_ticker(ticker=ticker))


@shared_task(ignore_result=True)
def expire_orders_task() -> int:
    return len(orders_expire_due())


@shared_task(ignore_result=True)
def sweep_pending_transactions_task() -> int:
    return len(transactions_requeue_stale(older_than_seconds=settings.SWEEP_PENDING_AFTER_SECONDS))
