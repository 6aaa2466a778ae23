"""Celery tasks: thin wrappers that take ids and call one service; and the requests that
enqueue them once per burst.

A settlement or an order check relays the events of the streams it touched when it ends
(events.relay.relaying), so a commit whose events it will read needs no relay task of its
own: the requests below claim those relays before they enqueue.
"""

from collections.abc import Iterable

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

from events.bus import claim_relay, unclaim_relay
from events.relay import relaying
from stockflow.queued import mark_queued

from .services import (
    orders_check_for_ticker,
    orders_due_to_expire,
    settlement_mark,
    transactions_settle_for_user,
    transactions_stale,
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


def request_settlement(user_ids: Iterable[int]) -> None:
    """Have a worker settle each user's ready orders: one queued task per user per burst
    (stockflow.queued), which reads whatever committed before it starts."""
    for user_id in sorted(set(user_ids)):
        claim_relay(user_id)  # before the check below: see events.bus.claim_relay
        if not mark_queued(settlement_mark(user_id), settings.SETTLE_QUEUED_MARK_SECONDS):
            continue
        try:
            _enqueue_settlement(user_id)
        except Exception:
            unclaim_relay(user_id, settlement_mark(user_id))  # the next request tries again
            raise


def _enqueue_settlement(user_id: int) -> None:
    settle_user_transactions_task.delay(user_id)


def request_order_check(tickers: Iterable[str]) -> None:
    """Have a worker apply the new quotes of each ticker to its open orders."""
    tickers = sorted(set(tickers))
    if tickers:
        claim_relay(None)  # each check relays the market's events (the quotes) when it ends
        try:
            for ticker in tickers:
                check_orders_task.delay(ticker)
        except Exception:
            unclaim_relay(None)
            raise


@shared_task(**RETRY_TRANSIENT)
def settle_user_transactions_task(user_id: int) -> int:
    with relaying(user_id):
        return len(transactions_settle_for_user(user_id=user_id))


@shared_task(**RETRY_TRANSIENT)
def check_orders_task(ticker: str) -> int:
    with relaying(None):
        users = orders_check_for_ticker(ticker=ticker)
    request_settlement(users)
    return len(users)


@shared_task(ignore_result=True)
def expire_orders_task() -> int:
    users = orders_due_to_expire()
    for user_id in users:
        _enqueue_settlement(user_id)
    return len(users)


@shared_task(ignore_result=True)
def sweep_pending_transactions_task() -> int:
    """Re-enqueue, without marks (a lost task may still hold one), what lost tasks left."""
    users, tickers = transactions_stale(older_than_seconds=settings.SWEEP_PENDING_AFTER_SECONDS)
    for user_id in users:
        _enqueue_settlement(user_id)
    for ticker in tickers:
        check_orders_task.delay(ticker)
    return len(users)
