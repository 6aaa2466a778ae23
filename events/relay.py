"""The relay: committed events handed to their RELAY subscribers, at least once, in order.

One stream (an account's events, or the market's) is relayed by one worker at a time: the
relay takes the stream's advisory lock, reads its unrelayed rows in `seq` order, hands them
to the handlers and marks them relayed, all in one transaction. A relay that dies before
its commit leaves them unrelayed, so they are handed over again (at least once); one that
waits for the lock reads only what the first left. The sweep relays what no relay came
for (a process killed between its commit and its request), and runs their COMMIT handlers
too, which that process may never have run.
"""

import logging
from contextlib import contextmanager
from datetime import timedelta

from django.db import connection
from django.db.transaction import atomic
from django.utils import timezone

from stockflow.queued import clear_queued

from . import bus
from .models import Event

logger = logging.getLogger(__name__)

# pg_advisory_xact_lock(namespace, stream): the namespace keeps these apart from other locks.
LOCK_NAMESPACE = 0x5EC0
BATCH = 500


def _lock_stream(account_id: int | None) -> None:
    """Take the stream's advisory lock until the commit. SQLite (the embedded mode, one
    process) locks the whole database for the first write anyway."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            stream = 0 if account_id is None else account_id % 2**31
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [LOCK_NAMESPACE, stream])


def _relay_batch(account_id: int | None, *, recover: bool) -> list[Event]:
    with atomic():
        _lock_stream(account_id)
        batch = list(
            Event.objects.filter(account_id=account_id, relayed_at__isnull=True)
            .select_related("account")
            .only("id", "account_id", "seq", "type", "data", "created_at", "account__username")
            .order_by("id")[:BATCH]
        )
        if batch:
            bus.deliver(bus.RELAY, batch, raise_errors=True)
            Event.objects.filter(pk__in=[event.pk for event in batch]).update(
                relayed_at=timezone.now()
            )
    if recover and batch:  # after the commit, as their recording process would have
        bus.deliver(bus.COMMIT, batch, raise_errors=False)
    return batch


def events_relay(*, account_id: int | None, recover: bool = False) -> int:
    """Relay the stream's unrelayed events; returns how many. `recover`: also run their
    COMMIT handlers (the sweep's events, whose recording process may have died)."""
    relayed = 0
    while True:
        batch = _relay_batch(account_id, recover=recover)
        relayed += len(batch)
        if len(batch) < BATCH:
            return relayed


def events_relay_stale(*, older_than_seconds: float) -> list[int | None]:
    """Relay, COMMIT handlers included, every stream with an event left unrelayed longer than
    `older_than_seconds`; returns those streams. A stream that fails is logged and the
    others go on: the next sweep tries it again."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    streams = sorted(
        set(
            Event.objects.filter(relayed_at__isnull=True, created_at__lt=cutoff).values_list(
                "account_id", flat=True
            )
        ),
        key=lambda account: -1 if account is None else account,
    )
    for account_id in streams:
        try:
            events_relay(account_id=account_id, recover=True)
        except Exception:
            logger.exception("events_relay_failed stream=%s", account_id)
    if streams:
        logger.info("events_swept streams=%s", ",".join(map(str, streams)))
    return streams


def events_prune(*, older_than_days: float) -> int:
    """Delete relayed events older than `older_than_days`, a batch at a time (no long lock on
    the table); returns how many. An account's `seq` goes on from its sequence row."""
    cutoff = timezone.now() - timedelta(days=older_than_days)
    old = Event.objects.filter(created_at__lt=cutoff, relayed_at__isnull=False)
    deleted = 0
    while True:
        ids = list(old.order_by("id").values_list("id", flat=True)[:10_000])
        if not ids:
            return deleted
        deleted += Event.objects.filter(pk__in=ids).delete()[0]


@contextmanager
def relaying(*account_ids: int | None):
    """Inside a worker's task: the streams its commits touch, and `account_ids` (those it
    claimed with bus.claim_relay), are relayed inline when the block ends, not by tasks of
    their own. The claims are cleared just before, so any commit that found one set is
    read by this relay."""
    collected = set(account_ids)
    token = bus._relaying_inline.set(collected)
    try:
        yield
    finally:
        bus._relaying_inline.reset(token)
        for account_id in account_ids:
            clear_queued(bus.relay_mark(account_id))
        for account_id in sorted(collected, key=lambda a: -1 if a is None else a):
            try:
                events_relay(account_id=account_id)
            except Exception:  # the sweep relays them
                logger.exception("events_relay_failed stream=%s", account_id)
