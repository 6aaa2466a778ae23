"""Recording events: rows of the outbox, written in the caller's database transaction.

`events_record` numbers each account's events from its `EventSequence` row (an upsert that
locks it until the commit: the last lock any recording takes, so it cannot close a cycle
with the user, order and position locks taken before it), inserts them,
and hands them to the bus once the transaction commits. Rolled back, they never happened.
On PostgreSQL numbering and inserting are one statement.
"""

import json
from collections import Counter
from collections.abc import Iterable

from django.db import connection
from django.db.transaction import atomic, on_commit
from django.utils import timezone

from stockflow.events import as_json
from users.models import User

from . import bus
from .models import Event, EventSequence

NUMBER_SQL = """
INSERT INTO {table} (account_id, last_seq) VALUES {values}
ON CONFLICT (account_id) DO UPDATE SET last_seq = {table}.last_seq + EXCLUDED.last_seq
RETURNING account_id, last_seq
"""


def _number(counts: dict[int, int]) -> dict[int, int]:
    """Take `counts[account]` numbers for each account; return the first of each.

    One statement for all the accounts, in id order (the order it locks them in), so two
    recordings of several accounts each (order checks of two tickers) cannot deadlock.
    """
    accounts = sorted(counts)
    sql = NUMBER_SQL.format(
        table=EventSequence._meta.db_table, values=", ".join(["(%s, %s)"] * len(accounts))
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [value for account in accounts for value in (account, counts[account])])
        last = dict(cursor.fetchall())
    return {account: last[account] - counts[account] + 1 for account in accounts}


# PostgreSQL numbers and inserts in one statement: the numbers come back from the upsert and
# go straight into the rows (`total - k`: how many of the account's numbers come after row k).
RECORD_SQL = """
WITH numbered AS (
    INSERT INTO {sequences} AS sequence (account_id, last_seq) VALUES {counts}
    ON CONFLICT (account_id) DO UPDATE SET last_seq = sequence.last_seq + EXCLUDED.last_seq
    RETURNING account_id, last_seq
)
INSERT INTO {events} (account_id, seq, type, data, created_at)
SELECT entry.account_id, numbered.last_seq - entry.after, entry.type, entry.data::jsonb,
       entry.created_at
FROM (VALUES {entries}) AS entry (position, account_id, after, type, data, created_at)
JOIN numbered USING (account_id)
ORDER BY entry.position
RETURNING id, account_id, seq
"""


def _insert_numbered(rows: list[Event]) -> None:
    """Number and insert account events in one statement (PostgreSQL); sets their id and seq."""
    counts = Counter(row.account_id for row in rows)
    accounts = sorted(counts)  # the order the upsert locks them in
    left = dict(counts)
    params, entries = [], []
    for position, row in enumerate(rows):
        left[row.account_id] -= 1
        entries.append("(%s, %s::bigint, %s, %s, %s, %s::timestamptz)")
        params += [position, row.account_id, left[row.account_id], row.type]
        params += [json.dumps(row.data), row.created_at]
    sql = RECORD_SQL.format(
        sequences=EventSequence._meta.db_table,
        events=Event._meta.db_table,
        counts=", ".join(["(%s, %s)"] * len(accounts)),
        entries=", ".join(entries),
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [v for a in accounts for v in (a, counts[a])] + params)
        returned = sorted(cursor.fetchall(), key=lambda r: (r[1], r[2]))
    by_account = {}
    for pk, account_id, seq in returned:
        by_account.setdefault(account_id, []).append((pk, seq))
    for row in rows:  # an account's rows, in order, took its numbers in order
        row.pk, row.seq = by_account[row.account_id].pop(0)


def _insert(rows: list[Event], *, read_after_numbering: bool) -> None:
    accounts = [row for row in rows if row.account_id is not None]
    if accounts and connection.vendor == "postgresql" and not read_after_numbering:
        _insert_numbered(accounts)
        market = [row for row in rows if row.account_id is None]
        if market:
            Event.objects.bulk_create(market)
        return
    if accounts:
        first = _number(Counter(row.account_id for row in accounts))
        for row in accounts:
            row.seq = first[row.account_id]
            first[row.account_id] += 1
    for row in rows:
        if callable(row.data):  # read now: after every change numbered before this one
            row.data = as_json(row.data())
    Event.objects.bulk_create(rows)


def events_record(entries: Iterable[tuple[User | None, str, dict]]) -> list[Event]:
    """Record `(account or None, type, data)` entries, in order, in the surrounding transaction
    (or one of their own); the bus gets them once it commits. Returns the new rows.

    Pass the account's User instance where the caller has it: COMMIT handlers read from it
    (its username, to invalidate its cache) without another query.

    `data` may be a function instead, called once the events are numbered: what it reads then
    includes every change numbered before them. A change that does not hold the account's
    lock (a market order, a sell's reservation, a trigger) reads the account's balance so,
    or an event numbered after a settlement could state the balance from before it.
    """
    now = timezone.now()
    rows = [
        Event(
            account=account,
            type=type_,
            data=data if callable(data) else as_json(data),
            created_at=now,
        )
        for account, type_, data in entries
    ]
    if not rows:
        return []
    with atomic(savepoint=False):
        _insert(rows, read_after_numbering=any(callable(row.data) for row in rows))
        on_commit(lambda: bus.dispatch(rows), robust=True)
    return rows
