"""Recording events: rows of the outbox, written in the caller's database transaction.

`events_record` numbers each account's events from its `EventSequence` row (an upsert that
locks it until the commit: the last lock any recording takes, so it cannot close a cycle
with the user, order and position locks taken before it), inserts them, and hands them to
the bus once the transaction commits. Rolled back, they never happened.

An account event may ask for the account's state (`WithAccountState`): its `balance`,
`reserved` and `buying_power`, read once the event is numbered, so they include every change
numbered before it. `created_at` is taken once numbered too, so it never goes back along
an account's `seq` (pruning by age relies on that). On PostgreSQL numbering and inserting
take one statement, or two when an event asks for the account's state (the read must
start after the numbering's lock).
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


class WithAccountState(dict):
    """Event data to which the recording adds the account's `balance`, `reserved` and
    `buying_power` as they stand once the event is numbered.

    For a change that does not hold the account's lock while it records (a market order, a
    sell's reservation, a trigger): a balance read before the numbering could predate a
    settlement numbered before this event, and the stream would show it going back.
    """


NUMBER_SQL = """
INSERT INTO {sequences} AS sequence (account_id, last_seq) VALUES {counts}
ON CONFLICT (account_id) DO UPDATE SET last_seq = sequence.last_seq + EXCLUDED.last_seq
RETURNING account_id, last_seq
"""

# Numbered and inserted in one statement: the numbers come back from the upsert and go
# straight into the rows (`after`: how many of the account's numbers come after the row's).
RECORD_SQL = """
WITH numbered AS ({number})
INSERT INTO {events} (account_id, seq, type, data, created_at)
SELECT entry.account_id, numbered.last_seq - entry.after, entry.type, entry.data::jsonb,
       clock_timestamp()
FROM (VALUES {entries}) AS entry (position, account_id, after, type, data)
JOIN numbered USING (account_id)
ORDER BY entry.position
RETURNING id, account_id, seq, data, created_at
"""

# Inserted once numbered, in a statement of its own, so its snapshot includes every commit
# before the numbering's lock was granted: the account's state as of the event's seq.
STATE_SQL = """
WITH inserted AS (
    INSERT INTO {events} (account_id, seq, type, data, created_at)
    SELECT entry.account_id, entry.seq, entry.type,
           CASE WHEN entry.with_state THEN entry.data::jsonb || jsonb_build_object(
               'balance', account.balance::text,
               'reserved', account.reserved::text,
               'buying_power', (account.balance - account.reserved)::text
           ) ELSE entry.data::jsonb END,
           clock_timestamp()
    FROM (VALUES {entries}) AS entry (position, account_id, seq, type, data, with_state)
    JOIN {users} AS account ON account.id = entry.account_id
    ORDER BY entry.position
    RETURNING id, account_id, seq, data, created_at
)
SELECT inserted.id, inserted.account_id, inserted.seq, inserted.data, inserted.created_at,
       account.username
FROM inserted JOIN {users} AS account ON account.id = inserted.account_id
"""


def _number_sql(counts: dict[int, int]) -> tuple[str, list]:
    """The upsert taking `counts[account]` numbers for each account, in id order (the order it
    locks them in), so two recordings of several accounts each cannot deadlock."""
    accounts = sorted(counts)
    sql = NUMBER_SQL.format(
        sequences=EventSequence._meta.db_table, counts=", ".join(["(%s, %s)"] * len(accounts))
    )
    return sql, [value for account in accounts for value in (account, counts[account])]


def _number(rows: list[Event]) -> None:
    """Give each account row its seq (one statement), in the rows' order."""
    sql, params = _number_sql(Counter(row.account_id for row in rows))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        last = dict(cursor.fetchall())
    counts = Counter(row.account_id for row in rows)
    following = {account: last[account] - counts[account] for account in counts}
    for row in rows:
        following[row.account_id] += 1
        row.seq = following[row.account_id]


def _stored(rows: list[Event], returned: list[tuple]) -> None:
    """Copy what the database made of each row (id, seq, data, and the username the COMMIT
    handlers invalidate by) onto it: an account's rows, in order, took its numbers in order."""
    by_account: dict[int, list] = {}
    for values in sorted(returned, key=lambda values: (values[1], values[2])):
        by_account.setdefault(values[1], []).append(values)
    for row in rows:
        pk, _, row.seq, data, row.created_at, *username = by_account[row.account_id].pop(0)
        row.pk, row.data = pk, data if isinstance(data, dict) else json.loads(data)
        if username:
            row.account.username = username[0]


def _values(columns: list[tuple]) -> tuple[str, list]:
    """A VALUES list of (position, *columns) per row, and its parameters."""
    placeholders, params = [], []
    for position, row in enumerate(columns):
        values = [position, *row]
        placeholders.append("(" + ", ".join(["%s"] * len(values)) + ")")
        params += values
    return ", ".join(placeholders), params


def _insert_postgresql(rows: list[Event]) -> None:
    events, users = Event._meta.db_table, User._meta.db_table
    with_state = any(isinstance(row.data, WithAccountState) for row in rows)
    if with_state:
        _number(rows)
        entries, params = _values(
            [
                (
                    row.account_id,
                    row.seq,
                    row.type,
                    json.dumps(row.data),
                    isinstance(row.data, WithAccountState),
                )
                for row in rows
            ]
        )
        sql = STATE_SQL.format(events=events, users=users, entries=entries)
    else:
        left = Counter(row.account_id for row in rows)
        columns = []
        for row in rows:
            left[row.account_id] -= 1
            data = json.dumps(row.data)
            columns.append((row.account_id, left[row.account_id], row.type, data))
        entries, params = _values(columns)
        number, number_params = _number_sql(Counter(row.account_id for row in rows))
        sql = RECORD_SQL.format(number=number, events=events, entries=entries)
        params = number_params + params
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        _stored(rows, cursor.fetchall())


def _insert_elsewhere(rows: list[Event]) -> None:
    """SQLite (the embedded mode): number, read the accounts asked for, insert."""
    _number(rows)
    numbered_at = timezone.now()
    for row in rows:
        row.created_at = numbered_at
    wanted = {row.account_id for row in rows if isinstance(row.data, WithAccountState)}
    accounts = User.objects.only("balance", "reserved", "username").in_bulk(wanted)
    for row in rows:
        if isinstance(row.data, WithAccountState):
            account = accounts[row.account_id]
            row.account.username = account.username
            row.data = as_json(
                {
                    **row.data,
                    "balance": account.balance,
                    "reserved": account.reserved,
                    "buying_power": account.balance - account.reserved,
                }
            )
    Event.objects.bulk_create(rows)


def events_record(entries: Iterable[tuple[User | None, str, dict]]) -> list[Event]:
    """Record `(account or None, type, data)` entries, in order, in the surrounding transaction
    (or one of their own); the bus gets them once it commits. Returns the new rows.

    Pass the account's User instance where the caller has one: COMMIT handlers read its
    username (to invalidate its cache) from it; for data `WithAccountState` the recording
    reads it itself.
    """
    now = timezone.now()
    rows = [
        Event(
            account=account,
            type=type_,
            data=WithAccountState(as_json(data))
            if isinstance(data, WithAccountState)
            else as_json(data),
            created_at=now,
        )
        for account, type_, data in entries
    ]
    if not rows:
        return []
    accounts = [row for row in rows if row.account_id is not None]
    with atomic(savepoint=False):
        if accounts:
            if connection.vendor == "postgresql":
                _insert_postgresql(accounts)
            else:
                _insert_elsewhere(accounts)
        market = [row for row in rows if row.account_id is None]
        if market:
            Event.objects.bulk_create(market)
        on_commit(lambda: bus.dispatch(rows), robust=True)
    return rows
