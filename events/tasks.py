"""Celery tasks of the outbox: relay a stream, sweep what no relay came for, prune old events."""

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

from stockflow.queued import clear_queued

from .bus import relay_mark
from .relay import events_prune, events_relay, events_relay_stale

TRANSIENT_DB_ERRORS = (OperationalError, InterfaceError)


@shared_task(
    autoretry_for=TRANSIENT_DB_ERRORS, retry_backoff=0.5, retry_backoff_max=10, max_retries=10
)
def relay_events_task(account_id: int | None) -> None:
    """Enqueued once a commit recorded events of this stream (bus.request_relay)."""
    clear_queued(relay_mark(account_id))  # before reading: a commit that found it set is read
    events_relay(account_id=account_id)


@shared_task(ignore_result=True)
def sweep_events_task() -> int:
    return len(events_relay_stale(older_than_seconds=settings.EVENTS_RELAY_SWEEP_AFTER_SECONDS))


@shared_task(ignore_result=True)
def prune_events_task() -> int:
    return events_prune(older_than_days=settings.EVENTS_RETENTION_DAYS)
