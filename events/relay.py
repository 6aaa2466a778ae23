"""The relay: committed events handed to their RELAY subscribers, at least once, in order.

One stream (an account's events, or the market's) is relayed by one worker at a time: the
relay takes the stream's advisory lock, claims its unrelayed rows in `seq` order (marking
them relayed), hands them to the handlers and commits, all in one transaction. A relay
that dies before its commit leaves them unrelayed, so they are handed over again (at least
once); one that waits for the lock claims only what the first left. The sweep relays what
no relay came for (a process killed between its commit and its request), and runs their
COMMIT handlers too, which that process may never have run.
"""

import json
import logging
from contextlib import contextmanager
from datetime import timedelta

from django.db import connection
from django.db.transaction import atomic
from django.utils import timezone

from stockflow.queued import clear_queued
from users.models import User

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


# Claims the batch and marks it relayed in one statement; the relay's transaction commits
# the mark only once the handlers have run.
CLAIM_SQL = """
UPDATE {events} SET relayed_at = %s
WHERE relayed_at IS NULL AND id IN (
    SELECT id FROM {events} WHERE {stream} AND relayed_at IS NULL ORDER BY id LIMIT %s
)
RETURNING id, account_id, seq, type, data, created_at
"""
FIELDS = ("id", "account_id", "seq", "type", "data", "created_at")


def _claim(account_id: int | None) -> list[Event]:
    """The stream's next unrelayed events, oldest first, marked relayed in this transaction."""
    now = timezone.now()
    if connection.vendor != "postgresql":
        batch = list(
            Event.objects.filter(account_id=account_id, relayed_at__isnull=True)
            .only(*FIELDS)
            .order_by("id")[:BATCH]
        )
        Event.objects.filter(pk__in=[event.pk for event in batch]).update(relayed_at=now)
        return batch
    stream = "account_id IS NULL" if account_id is None else "account_id = %s"
    params = [now] + ([] if account_id is None else [account_id]) + [BATCH]
    with connection.cursor() as cursor:
        cursor.execute(CLAIM_SQL.format(events=Event._meta.db_table, stream=stream), params)
        batch = [Event(**dict(zip(FIELDS, values, strict=True))) for values in cursor.fetchall()]
    for event in batch:  # Django has psycopg2 hand jsonb over as text
        if isinstance(event.data, str):
            event.data = json.loads(event.data)
    return sorted(batch, key=lambda event: event.pk)


def _with_usernames(batch: list[Event]) -> None:
    """Load the accounts' usernames, which COMMIT handlers invalidate caches by."""
    accounts = User.objects.only("username").in_bulk({event.account_id for event in batch})
    for event in batch:
        if event.account_id is not None:
            event.account = accounts[event.account_id]


def _relay_batch(account_id: int | None, *, recover: bool) -> list[Event]:
    with atomic():
        _lock_stream(account_id)
        batch = _claim(account_id)
        if batch:
            bus.deliver(bus.RELAY, batch, raise_errors=True)
    if recover and batch:  # after the commit, as their recording process would have
        _with_usernames(batch)
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
