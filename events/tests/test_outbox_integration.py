"""The outbox against real processes: gapless seqs under concurrency, a relay killed after
its commit, resuming /ws/orders/ with since, deposits on the stream and the heartbeat."""

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from decimal import Decimal

import psycopg2
import pytest
import requests
from django.db import connection
from websockets.sync.client import connect

from events.models import Event
from stockflow.events import as_json
from stockflow.testing import Stack, wait_for
from stocks.tests.factories import StockDataFactory
from transactions.models import Transaction, TransactionStatus
from users.models import User
from users.tests.factories import UserFactory

# Real processes started, killed and waited for: each test takes 5-15 s with its processes.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

LOCK_NAMESPACE = 24256  # 0x5EC0: events.relay's advisory lock namespace for streams
SETTLE_TIMEOUT = 40
QUIET = 1.0  # seconds a client must stay silent to have received nothing
REQUEST_TIMEOUT = 20
FINAL = ("completed", "failed")


# --- helpers ----------------------------------------------------------------------------------


def api(base_url: str, method: str, path: str, user: User, **kwargs) -> requests.Response:
    headers = {"Authorization": f"Token {user.auth_token.key}"}
    return requests.request(
        method, f"{base_url}{path}", headers=headers, timeout=REQUEST_TIMEOUT, **kwargs
    )


def market_order(base_url: str, user: User, side: str, volume: int) -> requests.Response:
    body = {"ticker": "ACME", "transaction_type": side, "transaction_volume": volume}
    return api(base_url, "POST", "/transactions/", user, json=body)


def transfer(base_url: str, user: User, direction: str, amount: str) -> requests.Response:
    body = {"direction": direction, "amount": amount}
    return api(base_url, "POST", f"/users/{user.username}/transfers/", user, json=body)


def orders_stream(ws, user: User, since: int | None = None):
    query = f"?token={user.auth_token.key}" + ("" if since is None else f"&since={since}")
    return connect(f"{ws.ws_url}/ws/orders/{query}", proxy=None, open_timeout=10)


def next_message(client, timeout: float = 15) -> dict:
    return json.loads(client.recv(timeout=timeout))


def assert_silent(client):
    with pytest.raises(TimeoutError):
        client.recv(timeout=QUIET)


def receive_through(client, last_seq: int, timeout: float = 30) -> list[dict]:
    """Every message until one with seq `last_seq` (heartbeats included, if any)."""
    received = []
    deadline = time.monotonic() + timeout
    while not received or received[-1].get("seq") != last_seq:
        received.append(next_message(client, timeout=max(0.1, deadline - time.monotonic())))
    return received


def seqs_of(messages: list[dict]) -> list[int]:
    return [m["seq"] for m in messages if m.get("event") != "heartbeat"]


def event_seqs(user: User) -> list[int]:
    return list(Event.objects.filter(account=user).order_by("seq").values_list("seq", flat=True))


def pending(user: User):
    return Transaction.objects.filter(user=user, status=TransactionStatus.PENDING)


def wait_until_final(user: User):
    wait_for(
        lambda: not pending(user).exists(),
        SETTLE_TIMEOUT,
        lambda: f"{pending(user).count()} orders still pending after {SETTLE_TIMEOUT}s",
    )


@contextmanager
def stream_locked(stack: Stack, user: User) -> Iterator[None]:
    """Hold the account stream's advisory lock from a connection of the test's own: every
    relay of it (inline or a task) waits after its events committed, until the block ends."""
    lock = psycopg2.connect(stack.database_url())
    lock.autocommit = True
    try:
        with lock.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s, %s)", [LOCK_NAMESPACE, user.pk])
        yield
    finally:
        lock.close()  # a session lock goes with its connection


def advisory_lock_waiters(stack: Stack) -> int:
    """Backends of the test database waiting for an advisory lock: blocked relays."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
            "AND wait_event_type = 'Lock' AND wait_event = 'advisory'",
            [stack.database_name],
        )
        return cursor.fetchone()[0]


# --- 1. seq 1..N under concurrency ---------------------------------------------------------------


def test_concurrent_orders_and_transfers_of_one_user_number_events_one_to_n(stack):
    user = UserFactory(balance=Decimal("1000.00"))
    StockDataFactory(ticker="ACME", close_price=Decimal("10.0000"))
    stack.worker(concurrency=4)
    web = stack.web(workers=4, threads=8)
    rng = random.Random(14)
    operations = (
        [("order", "buy", rng.randint(1, 5)) for _ in range(55)]
        + [("order", "sell", rng.randint(1, 5)) for _ in range(35)]
        # Beyond any balance and any position these orders can reach: sure to fail.
        + [("order", "buy", 1000), ("order", "sell", 1000)] * 5
        + [("transfer", "deposit", "100.00")] * 50
        + [("transfer", "withdrawal", "100.00")] * 50
    )
    rng.shuffle(operations)

    def run(operation):
        kind, what, amount = operation
        if kind == "order":
            return kind, market_order(web.url, user, what, amount)
        return kind, transfer(web.url, user, what, amount)

    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(run, operations))

    orders = [r for kind, r in results if kind == "order"]
    transfers = [r for kind, r in results if kind == "transfer"]
    # A market order is always accepted (settlement decides); a withdrawal beyond the
    # buying power is refused and records nothing.
    assert Counter(r.status_code for r in orders) == {201: 100}, [r.text for r in orders][:3]
    assert set(Counter(r.status_code for r in transfers)) <= {201, 409}
    order_ids = {r.json()["id"] for r in orders}
    transfer_ids = sorted(r.json()["id"] for r in transfers if r.status_code == 201)
    wait_until_final(user)

    expected = 2 * len(order_ids) + len(transfer_ids)
    events = list(Event.objects.filter(account=user).order_by("seq"))
    assert [e.seq for e in events] == list(range(1, expected + 1))
    by_order: dict[int, dict[str, list[int]]] = {}
    for event in events:
        if event.type != "transfer":
            by_order.setdefault(event.data["order"]["id"], {}).setdefault(event.type, [])
            by_order[event.data["order"]["id"]][event.type].append(event.seq)
    assert set(by_order) == order_ids
    statuses = dict(Transaction.objects.filter(user=user).values_list("pk", "status"))
    assert set(statuses.values()) == set(FINAL)  # the mix made both outcomes
    for order_id, seqs in by_order.items():
        final = statuses[order_id]
        assert {kind: len(at) for kind, at in seqs.items()} == {"submitted": 1, final: 1}
        assert seqs["submitted"][0] < seqs[final][0], (order_id, seqs)
    assert sorted(e.data["transfer"]["id"] for e in events if e.type == "transfer") == transfer_ids

    page = api(web.url, "GET", "/events/?limit=1000", user)
    assert page.status_code == 200, page.text
    body = page.json()
    assert (body["count"], body["next"], body["previous"]) == (expected, None, None)
    assert [item["seq"] for item in body["results"]] == list(range(1, expected + 1))
    assert [item["type"] for item in body["results"]] == [e.type for e in events]


# --- 2. a worker killed between its commit and its relay --------------------------------------


def test_a_worker_killed_between_commit_and_relay_delivers_every_event_once_restarted(stack):
    user = UserFactory(balance=Decimal("1000.00"))
    StockDataFactory(ticker="ACME", close_price=Decimal("10.0000"))
    web = stack.web()
    # No heartbeat: every message the client gets is a relay's publish (or the gap read a
    # live one triggers), never the stream polling the outbox on its own.
    ws = stack.ws(WS_HEARTBEAT_SECONDS="0")
    with orders_stream(ws, user) as client:
        with stream_locked(stack, user):
            sides = ["buy", "buy", "sell", "buy", "sell", "sell"]
            # Submitted before any worker runs: one settlement task takes all six.
            for side in sides:
                assert market_order(web.url, user, side, 2).status_code == 201
            worker = stack.worker()
            wait_until_final(user)
            wait_for(
                lambda: advisory_lock_waiters(stack) == 1,
                SETTLE_TIMEOUT,
                "the settlement's inline relay never waited for the stream's lock",
            )
            unrelayed = Event.objects.filter(account=user, relayed_at__isnull=True)
            assert unrelayed.count() == 2 * len(sides)
            assert_silent(client)  # committed, not relayed: nothing was published
            worker.kill()
        assert unrelayed.count() == 2 * len(sides)  # the dead relay marked nothing

        successor = stack.worker(EVENTS_RELAY_SWEEP_AFTER_SECONDS="1")
        stack.beat(SWEEP_INTERVAL_SECONDS="0.5")
        wait_for(
            lambda: not unrelayed.exists(),
            SETTLE_TIMEOUT,
            lambda: f"{unrelayed.count()} events still unrelayed",
        )
        received = receive_through(client, 2 * len(sides))
        assert_silent(client)

    assert seqs_of(received) == list(range(1, 2 * len(sides) + 1))
    types = Event.objects.filter(account=user).order_by("seq").values_list("type", flat=True)
    assert [m["event"] for m in received] == list(types)
    assert f"events_swept streams={user.pk}" in successor.log()
    assert "Traceback" not in ws.log()


# --- 3. reconnecting with since --------------------------------------------------------------


def test_a_client_that_reconnects_with_since_gets_every_event_once_in_order(stack):
    user = UserFactory(balance=Decimal("1000.00"))
    StockDataFactory(ticker="ACME", close_price=Decimal("10.0000"))
    stack.worker(concurrency=4)
    web, ws = stack.web(), stack.ws(WS_HEARTBEAT_SECONDS="0")
    phase_one_done, resume = threading.Event(), threading.Event()
    responses: list[requests.Response] = []

    def operate(count: int):
        for n in range(count):
            if n % 2:
                responses.append(transfer(web.url, user, "deposit", "10.00"))
            else:
                responses.append(market_order(web.url, user, "buy", 1))
            time.sleep(0.1)  # paces the load so the client leaves mid-stream

    def produce():
        operate(20)
        phase_one_done.set()
        if resume.wait(30):  # the last ten once the client is back: they come live
            operate(10)

    producer = threading.Thread(target=produce)
    unrelayed = Event.objects.filter(account=user, relayed_at__isnull=True)
    try:
        with orders_stream(ws, user) as client:
            producer.start()
            first = [next_message(client) for _ in range(4)]
        last_seen = first[-1]["seq"]
        # Away while the producer goes on: what it records now comes back from the outbox.
        assert phase_one_done.wait(30)
        wait_until_final(user)
        wait_for(
            lambda: not unrelayed.exists(),
            SETTLE_TIMEOUT,
            lambda: f"never relayed: {list(unrelayed.values_list('seq', 'type', 'created_at'))}",
        )
        with ExitStack() as reconnected:
            with stream_locked(stack, user):
                # Two deposits committed but not relayed: the replay below reads them from the
                # outbox, and their relay publishes them again once the lock goes.
                for _ in range(2):
                    assert transfer(web.url, user, "deposit", "10.00").status_code == 201
                latest = event_seqs(user)[-1]
                assert (latest > last_seen + 4, unrelayed.count()) == (True, 2)
                client = reconnected.enter_context(orders_stream(ws, user, since=last_seen))
                replayed = receive_through(client, latest)
            wait_for(lambda: not unrelayed.exists(), SETTLE_TIMEOUT, "the deposits never relayed")
            resume.set()
            producer.join()
            wait_until_final(user)
            expected = 2 * 15 + 15 + 2  # 15 orders (submitted, completed), 17 deposits
            live = receive_through(client, expected)
            assert_silent(client)
    finally:
        resume.set()
        producer.join()

    assert Counter(r.status_code for r in responses) == {201: 30}
    assert seqs_of(replayed) == list(range(last_seen + 1, latest + 1))
    assert seqs_of(live) == list(range(latest + 1, expected + 1))
    seen = seqs_of(first) + seqs_of(replayed) + seqs_of(live)
    assert Counter(seen) == Counter(range(1, expected + 1))  # each seq exactly once
    assert seen == list(range(1, expected + 1))


# --- 4. a deposit on the stream and in /events/ -------------------------------------------------


def test_a_deposit_shows_up_on_the_orders_stream_and_in_events(stack):
    user = UserFactory(balance=Decimal("1000.00"))
    stack.worker()
    web, ws = stack.web(), stack.ws(WS_HEARTBEAT_SECONDS="0")

    with orders_stream(ws, user) as client:
        response = transfer(web.url, user, "deposit", "500.00")
        assert response.status_code == 201, response.text
        message = next_message(client)
        assert_silent(client)

    event = Event.objects.get(account=user)
    created_at = as_json(event.created_at)
    deposit = response.json()
    assert deposit == {
        "id": deposit["id"],
        "user_id": user.pk,
        "username": user.username,
        "direction": "deposit",
        "amount": "500.00",
        "balance_after": "1500.00",
        "created_at": deposit["created_at"],
    }
    account = {"balance": "1500.00", "reserved": "0.00", "buying_power": "1500.00"}
    assert message == {
        "event": "transfer",
        "seq": 1,
        "created_at": created_at,
        "transfer": deposit,
        **account,
    }
    page = api(web.url, "GET", "/events/", user)
    assert page.status_code == 200, page.text
    assert page.json() == {
        "count": 1,
        "next": None,
        "previous": None,
        "results": [
            {
                "seq": 1,
                "type": "transfer",
                "created_at": created_at,
                "data": {"transfer": deposit, **account},
            }
        ],
    }
    assert event.relayed_at is not None


# --- 5. the heartbeat ------------------------------------------------------------------------


def test_heartbeat_reports_the_latest_seq_on_a_quiet_stream(stack):
    user = UserFactory(balance=Decimal("1000.00"))
    stack.worker()
    web, ws = stack.web(), stack.ws(WS_HEARTBEAT_SECONDS="0.5")
    heartbeat = {"type": "heartbeat", "event": "heartbeat"}

    with orders_stream(ws, user) as client:
        assert next_message(client, timeout=5) == {**heartbeat, "seq": 0}
        assert transfer(web.url, user, "deposit", "500.00").status_code == 201
        after = [next_message(client, timeout=5)]
        while after[-1] == {**heartbeat, "seq": 0}:  # beats that came before the commit
            after = [next_message(client, timeout=5)]
        after += [next_message(client, timeout=5) for _ in range(2)]

    assert (after[0]["event"], after[0]["seq"]) == ("transfer", 1)
    assert after[1:] == [{**heartbeat, "seq": 1}, {**heartbeat, "seq": 1}]
