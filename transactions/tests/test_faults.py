"""Fault injection against real processes: killed workers, a dead or frozen Redis, duplicate
deliveries and terminated database connections never lose, repeat or corrupt a settlement."""

import os
import random
import re
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal

import psycopg2
import pytest
import requests
from django.db import connection
from django.db.models import Sum
from django.db.transaction import atomic

from stockflow.money import cash_exact
from stockflow.testing import Process, Stack, wait_for
from stocks.tests.factories import StockDataFactory
from transactions.models import (
    FailureReason,
    Position,
    Transaction,
    TransactionStatus,
    TransactionType,
    Transfer,
    TransferDirection,
)
from users.models import User
from users.tests.factories import UserFactory

# Real processes started, killed and waited for: 40 s at most so far, far above the default.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PRICES = {"ACME": Decimal("10.0000"), "BOLT": Decimal("2.5000")}
OPENING_BALANCE = Decimal("1000.00")
SETTLE_TIMEOUT = 40
TASK_EVENT = re.compile(r"settle_user_transactions_task\[([0-9a-f-]{36})\] (received|succeeded)")
TASK_RESULT = re.compile(
    r"settle_user_transactions_task\[([0-9a-f-]{36})\] succeeded in [0-9.e-]+s: (\d+)"
)


@dataclass
class Ledger:
    """The orders a test placed and, replayed in submission order, what settlement must yield.

    Settlement takes a user's pending transactions in id order and decides each from the
    state the earlier ones left, so however often it is killed, retried or run twice, the
    stored outcome must equal this sequential replay, to the cent and to the share.
    """

    seed: int
    users: list[User] = field(default_factory=list)
    balance: dict[int, Decimal] = field(default_factory=dict)
    shares: Counter = field(default_factory=Counter)
    outcome: dict[int, tuple[str, str | None]] = field(default_factory=dict)

    def __post_init__(self):
        self.rng = random.Random(self.seed)

    @property
    def user_ids(self) -> list[int]:
        return [user.pk for user in self.users]

    def open_accounts(self, count: int) -> list[User]:
        for _ in range(count):
            user = UserFactory(balance=OPENING_BALANCE)
            self.users.append(user)
            self.balance[user.pk] = OPENING_BALANCE
        return self.users

    def random_orders(self, user: User, count: int) -> list[Transaction]:
        """Unsaved pending orders: buys and sells of two tickers, some bound to fail."""
        orders = []
        for _ in range(count):
            ticker = self.rng.choice(sorted(PRICES))
            volume = self.rng.randint(1, 20)
            orders.append(
                Transaction(
                    user=user,
                    ticker=ticker,
                    transaction_type=self.rng.choice([TransactionType.BUY, TransactionType.SELL]),
                    transaction_volume=volume,
                    unit_price=PRICES[ticker],
                    transaction_price=cash_exact(PRICES[ticker] * volume),  # whole cents
                )
            )
        return orders

    def place(self, orders: list[Transaction]):
        """Store the orders pending in one commit, as submissions do, and replay them."""
        with atomic():
            stored = Transaction.objects.bulk_create(orders)
        for txn in sorted(stored, key=lambda t: t.pk):
            self.replay(txn)

    def adopt(self, ids: list[int]):
        """Replay orders that were submitted over HTTP, in id order."""
        for txn in Transaction.objects.filter(pk__in=ids).order_by("pk"):
            self.replay(txn)

    def replay(self, txn: Transaction):
        key = (txn.user_id, txn.ticker)
        if txn.transaction_type == TransactionType.BUY:
            if self.balance[txn.user_id] < txn.transaction_price:
                self.outcome[txn.pk] = ("failed", FailureReason.INSUFFICIENT_FUNDS)
                return
            self.balance[txn.user_id] -= txn.transaction_price
            self.shares[key] += txn.transaction_volume
        else:
            if self.shares[key] < txn.transaction_volume:
                self.outcome[txn.pk] = ("failed", FailureReason.INSUFFICIENT_SHARES)
                return
            self.shares[key] -= txn.transaction_volume
            self.balance[txn.user_id] += txn.transaction_price
        self.outcome[txn.pk] = ("completed", None)

    def pending(self):
        return Transaction.objects.filter(
            user_id__in=self.user_ids, status=TransactionStatus.PENDING
        )

    def wait_until_final(self, timeout: float = SETTLE_TIMEOUT):
        wait_for(
            lambda: not self.pending().exists(),
            timeout,
            lambda: f"{self.pending().count()} transactions still pending after {timeout}s",
        )

    def assert_settled_exactly_as_replayed(self):
        rows = Transaction.objects.filter(user_id__in=self.user_ids)
        stored = {
            pk: (status, reason)
            for pk, status, reason in rows.values_list("pk", "status", "failure_reason")
        }
        assert stored == self.outcome
        balances = dict(User.objects.filter(pk__in=self.user_ids).values_list("pk", "balance"))
        assert balances == self.balance
        positions = Counter(
            {
                (p.user_id, p.ticker): p.quantity
                for p in Position.objects.filter(user_id__in=self.user_ids)
            }
        )
        assert +positions == +self.shares  # unary + drops zero quantities on both sides
        assert_invariants(self.user_ids, dict.fromkeys(self.user_ids, OPENING_BALANCE))


def assert_invariants(user_ids: list[int], opening: dict[int, Decimal]):
    """DESIGN.md invariants 1-4 for every one of these users, from the database alone."""
    txns = Transaction.objects.filter(user_id__in=user_ids)
    assert not txns.filter(status=TransactionStatus.PENDING).exists()  # 4. all final
    completed = txns.filter(status=TransactionStatus.COMPLETED)
    cash = Counter()
    for row in completed.values("user_id", "transaction_type").annotate(
        total=Sum("transaction_price")
    ):
        sign = -1 if row["transaction_type"] == TransactionType.BUY else 1
        cash[row["user_id"]] += sign * row["total"]
    for row in (
        Transfer.objects.filter(user_id__in=user_ids)
        .values("user_id", "direction")
        .annotate(total=Sum("amount"))
    ):
        sign = 1 if row["direction"] == TransferDirection.DEPOSIT else -1
        cash[row["user_id"]] += sign * row["total"]
    shares = Counter()
    for row in completed.values("user_id", "ticker", "transaction_type").annotate(
        total=Sum("transaction_volume")
    ):
        sign = 1 if row["transaction_type"] == TransactionType.BUY else -1
        shares[(row["user_id"], row["ticker"])] += sign * row["total"]

    balances = dict(User.objects.filter(pk__in=user_ids).values_list("pk", "balance"))
    # 1. cash conserved: opening + deposits - withdrawals - completed buys + completed sells
    assert balances == {pk: opening[pk] + cash[pk] for pk in user_ids}
    positions = {
        (p.user_id, p.ticker): p.quantity for p in Position.objects.filter(user_id__in=user_ids)
    }
    for key in positions.keys() | shares.keys():
        assert positions.get(key, 0) == shares[key], key  # 2. shares conserved
    assert min(balances.values()) >= 0  # 3. nothing negative
    assert min(positions.values(), default=0) >= 0


def settled_counts(log: str) -> Counter:
    """How often each transaction was settled, by the workers' own log lines (written only
    after the settlement committed)."""
    return Counter(int(pk) for pk in re.findall(r"transaction_settled transaction_id=(\d+) ", log))


def tasks_in(log: str) -> tuple[set[str], set[str]]:
    """The settlement task ids a worker log shows as received, and as succeeded."""
    received, succeeded = set(), set()
    for task_id, event in TASK_EVENT.findall(log):
        (received if event == "received" else succeeded).add(task_id)
    return received, succeeded


def feed_orders(stack: Stack, ledger: Ledger, rounds: int, per_round: int, pause: float):
    """Load: each round, `per_round` new orders for every user and a settlement task each."""
    try:
        for _ in range(rounds):
            ledger.place(
                [o for user in ledger.users for o in ledger.random_orders(user, per_round)]
            )
            for user_id in ledger.user_ids:
                stack.send_settle(user_id)
            time.sleep(pause)  # paces the load; nothing waits on it
    finally:
        connection.close()  # this thread's own connection


def feeding(stack: Stack, ledger: Ledger, **load) -> threading.Thread:
    feeder = threading.Thread(target=feed_orders, args=(stack, ledger), kwargs=load)
    feeder.start()
    return feeder


@contextmanager
def settlement_blocked(stack: Stack, user_id: int) -> Iterator[None]:
    """Hold the user's row lock from another connection: their settlement waits inside its
    database transaction until the block ends, so a fault is sure to strike mid-task."""
    conn = psycopg2.connect(stack.database_url())
    try:
        with conn.cursor() as cursor:
            table = User._meta.db_table
            cursor.execute(f"SELECT 1 FROM {table} WHERE id = %s FOR UPDATE", [user_id])
        yield
    finally:
        conn.rollback()
        conn.close()


def lock_waiters(stack: Stack) -> int:
    """Backends of the test database waiting for a row lock, i.e. blocked settlements."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'",
            [stack.database_name],
        )
        return cursor.fetchone()[0]


def pool_children(process: Process) -> list[int]:
    with open(f"/proc/{process.pid}/task/{process.pid}/children") as children:
        return [int(pid) for pid in children.read().split()]


# --- 1. Workers killed while they settle -----------------------------------------------------


def test_a_worker_killed_again_and_again_under_load_settles_everything_once(stack):
    # Recovery relies on the broker: tasks are acks_late, so a worker killed with SIGKILL
    # leaves the messages it had taken in kombu's "unacked" set, and a live worker puts
    # them back on the queue once CELERY_VISIBILITY_TIMEOUT (3 s here) has passed; the test
    # checks that by task id. Beat's sweeper runs too, as in production: it alone rescues a
    # message killed between Redis's BRPOP and kombu recording it as unacked.
    ledger = Ledger(seed=1)
    ledger.open_accounts(30)
    stack.beat(SWEEP_INTERVAL_SECONDS="1", SWEEP_PENDING_AFTER_SECONDS="1")
    worker_env = {"CELERY_VISIBILITY_TIMEOUT": "3"}
    feeder = feeding(stack, ledger, rounds=10, per_round=10, pause=0.5)
    killed: list[Process] = []
    strike = random.Random(7)  # not the ledger's generator: the feeder thread draws from it
    try:
        for _ in range(5):
            worker = stack.worker(**worker_env)
            time.sleep(strike.uniform(0.6, 1.2))  # when the fault strikes, not a condition
            worker.kill()  # SIGKILL to the process group: main process and pool children
            killed.append(worker)
    finally:
        feeder.join()
    stack.worker(**worker_env)

    assert len(ledger.outcome) == 30 * 10 * 10
    ledger.wait_until_final()
    interrupted = set()
    for worker in killed:
        received, succeeded = tasks_in(worker.log())
        interrupted |= received - succeeded
    assert interrupted, "no kill struck a settlement in flight; the test proved nothing"

    def not_run_again() -> set[str]:
        return interrupted - tasks_in(stack.logs("worker"))[1]

    wait_for(lambda: not not_run_again(), SETTLE_TIMEOUT, lambda: f"lost: {not_run_again()}")
    ledger.assert_settled_exactly_as_replayed()
    assert max(settled_counts(stack.logs("worker")).values()) == 1


def test_a_settlement_cut_off_by_a_killed_worker_runs_again_after_the_visibility_timeout(stack):
    # No beat: only the broker's redelivery of the unacked message can settle these.
    ledger = Ledger(seed=2)
    (user,) = ledger.open_accounts(1)
    ledger.place(ledger.random_orders(user, 8))
    worker_env = {"CELERY_VISIBILITY_TIMEOUT": "5"}
    worker = stack.worker(**worker_env)

    with settlement_blocked(stack, user.pk):
        task_id = stack.send_settle(user.pk)
        wait_for(lambda: lock_waiters(stack) == 1, 30, "the settlement never reached the lock")
        worker.kill()
    assert ledger.pending().count() == 8  # the killed settlement changed nothing
    successor = stack.worker(**worker_env)

    # kombu used to look for expired messages every 100 s whatever the timeout: see settings.
    successor.wait_for_log(f"[{task_id}] succeeded", timeout=30)
    ledger.assert_settled_exactly_as_replayed()
    assert settled_counts(successor.log()) == Counter(dict.fromkeys(ledger.outcome, 1))


def test_a_settlement_whose_pool_process_died_is_requeued_at_once(stack):
    # The default visibility timeout (an hour) and no beat: only task_reject_on_worker_lost,
    # the main process requeueing the message of a child that died, can settle these.
    ledger = Ledger(seed=3)
    (user,) = ledger.open_accounts(1)
    ledger.place(ledger.random_orders(user, 8))
    worker = stack.worker(concurrency=1)

    with settlement_blocked(stack, user.pk):
        task_id = stack.send_settle(user.pk)
        wait_for(lambda: lock_waiters(stack) == 1, 30, "the settlement never reached the lock")
        (child,) = pool_children(worker)
        os.kill(child, signal.SIGKILL)
        worker.wait_for_log("WorkerLostError", timeout=30)

    worker.wait_for_log(f"[{task_id}] succeeded", timeout=30)
    assert worker.log().count(f"[{task_id}] received") == 2
    ledger.assert_settled_exactly_as_replayed()
    assert settled_counts(worker.log()) == Counter(dict.fromkeys(ledger.outcome, 1))


# --- 2. Redis dies (or freezes) under a real gunicorn, then comes back -----------------------

REQUEST_TIMEOUT = 20  # a hung request fails the test with its duration instead of hanging it


@dataclass
class Call:
    method: str
    path: str
    status: int | None
    seconds: float
    body: dict | list | None


def call(base_url: str, method: str, path: str, user: User | None = None, **kwargs) -> Call:
    headers = {"Authorization": f"Token {user.auth_token.key}"} if user else {}
    started = time.monotonic()
    try:
        response = requests.request(
            method, f"{base_url}{path}", headers=headers, timeout=REQUEST_TIMEOUT, **kwargs
        )
        status, body = response.status_code, response.json()
    except requests.Timeout:
        status, body = None, None
    return Call(method, path, status, time.monotonic() - started, body)


def buy_one(base_url: str, user: User) -> list[Call]:
    order = {"ticker": "ACME", "transaction_type": "buy", "transaction_volume": 1}
    return [call(base_url, "POST", "/transactions/", user, json=order)]


def trade_and_read(base_url: str, user: User, rounds: int) -> list[Call]:
    """One client: submit a buy, then read the account, the quotes and the new order."""
    calls = []
    for _ in range(rounds):
        (submitted,) = buy_one(base_url, user)
        calls.append(submitted)
        calls.append(call(base_url, "GET", f"/users/{user.username}/", user))
        calls.append(call(base_url, "GET", "/stocks/", user))
        calls.append(call(base_url, "GET", "/stocks/ACME/", user))
        if submitted.status == 201:
            path = f"/transactions/{user.pk}/{submitted.body['id']}/"
            calls.append(call(base_url, "GET", path, user))
    return calls


def everyone(ledger: Ledger, client: Callable[[User], list[Call]]) -> list[Call]:
    """Run `client(user)` for every user at once; all their calls."""
    with ThreadPoolExecutor(len(ledger.users)) as pool:
        return [c for calls in pool.map(client, ledger.users) for c in calls]


def submitted_ids(calls: list[Call]) -> list[int]:
    return [c.body["id"] for c in calls if c.method == "POST" and c.status == 201]


def assert_cached_accounts_match_the_database(base_url: str, ledger: Ledger):
    balances = dict(User.objects.filter(pk__in=ledger.user_ids).values_list("pk", "balance"))
    for _ in range(2):  # the first read may fill the cache, the second reads from it
        for user in ledger.users:
            detail = call(base_url, "GET", f"/users/{user.username}/", user)
            assert (detail.status, detail.body["balance"]) == (200, f"{balances[user.pk]:.2f}")


def assert_served_from_the_database(calls: list[Call], balances: dict[str, Decimal]):
    """Every request during the outage got the right answer (which only the database had)."""
    for c in calls:
        if c.method == "POST":
            assert (c.status, c.body["status"]) == (201, "pending"), c
        elif c.path.startswith("/users/"):
            username = c.path.split("/")[2]
            assert (c.status, c.body["balance"]) == (200, f"{balances[username]:.2f}"), c
        elif c.path == "/stocks/":
            assert (c.status, [q["ticker"] for q in c.body]) == (200, ["ACME"]), c
        elif c.path == "/stocks/ACME/":
            assert (c.status, c.body["close_price"]) == (200, "10.0000"), c
        else:
            assert (c.status, c.body["status"]) == (200, "pending"), c


def run_redis_outage(stack: Stack, fault, recover, rounds: int, slowest_acceptable: float):
    """Trade through gunicorn before, during and after a Redis fault. After it, nothing but
    the processes themselves (worker, beat, web) acts on the orders left pending."""
    ledger = Ledger(seed=4)
    ledger.open_accounts(6)
    StockDataFactory(ticker="ACME", close_price=Decimal("10.0000"))
    # Enough threads in each gunicorn process for every client at once: the test measures
    # what one request costs, not how requests queue behind slow ones (see the frozen case).
    web = stack.web(workers=2, threads=len(ledger.users) + 2)
    stack.worker()
    beat = stack.beat(SWEEP_INTERVAL_SECONDS="1", SWEEP_PENDING_AFTER_SECONDS="1")
    ledger.adopt(submitted_ids(everyone(ledger, lambda user: buy_one(web.url, user))))
    ledger.wait_until_final()
    assert_cached_accounts_match_the_database(web.url, ledger)  # the caches are warm

    fault()
    balances = {user.username: ledger.balance[user.pk] for user in ledger.users}
    during = everyone(ledger, lambda user: trade_and_read(web.url, user, rounds))
    health = call(web.url, "GET", "/health/")
    slowest = sorted(during, key=lambda c: -c.seconds)[:5]
    print("slowest during the outage:", [(c.method, c.path, round(c.seconds, 2)) for c in slowest])
    assert slowest[0].seconds < slowest_acceptable, slowest
    assert_served_from_the_database(during, balances)
    assert (health.status, health.body["status"]) == (200, "degraded"), health
    ledger.adopt(submitted_ids(during))
    assert ledger.pending().count() == 6 * rounds  # all stored; none could settle yet

    recover()
    started = time.monotonic()
    ledger.wait_until_final()  # beat's sweeper re-enqueues them; worker and beat reconnected
    print(f"settled {time.monotonic() - started:.1f}s after Redis came back")
    ledger.assert_settled_exactly_as_replayed()
    assert_cached_accounts_match_the_database(web.url, ledger)

    # With the sweeper gone, a new order settles only if the web side reconnected by itself.
    beat.stop()
    ledger.adopt(submitted_ids(everyone(ledger, lambda user: buy_one(web.url, user))))
    ledger.wait_until_final()
    ledger.assert_settled_exactly_as_replayed()
    assert_cached_accounts_match_the_database(web.url, ledger)
    assert set(ledger.balance.values()) == {OPENING_BALANCE - 10 * (1 + rounds + 1)}


def test_orders_and_reads_survive_a_dead_redis_and_settle_once_it_returns(stack, own_redis):
    # Refused connections fail at once: a dead Redis must cost requests nothing noticeable.
    run_redis_outage(stack, own_redis.kill, own_redis.start, rounds=4, slowest_acceptable=2.0)


def test_orders_and_reads_survive_a_frozen_redis_and_settle_once_it_thaws(stack, own_redis):
    # SIGSTOP: the kernel still accepts connections but no command is ever answered, so
    # only socket timeouts bound a request. Each Redis call on a request path (throttle
    # history, cache version, cached value, publish) waits out REDIS_SOCKET_TIMEOUT (0.5 s),
    # up to five per request (live updates go out on a background thread), so a request takes
    # ~2.5 s while Redis hangs (and requests queue once clients outnumber threads). The
    # broker's 5 s timeout made orders take 16 s.
    run_redis_outage(stack, own_redis.freeze, own_redis.thaw, rounds=2, slowest_acceptable=5.0)


# --- 3. The same settlement delivered five times, to two worker processes at once -------------


def test_a_settlement_delivered_five_times_to_two_workers_at_once_applies_once(stack):
    ledger = Ledger(seed=5)
    ledger.open_accounts(60)
    ledger.place([o for user in ledger.users for o in ledger.random_orders(user, 8)])
    workers = [stack.worker("worker-a", concurrency=2), stack.worker("worker-b", concurrency=2)]

    # The same message five times back to back, as a broker redelivers it: the four pool
    # processes of the two workers take the copies of one user's settlement together.
    task_user = {str(uuid.uuid4()): user_id for user_id in ledger.user_ids}
    for task_id, user_id in task_user.items():
        for _ in range(5):
            stack.send_settle(user_id, task_id=task_id)

    def runs() -> dict[str, list[int]]:
        settled = {task_id: [] for task_id in task_user}
        for task_id, count in TASK_RESULT.findall(stack.logs("worker")):
            settled[task_id].append(int(count))
        return settled

    wait_for(
        lambda: all(len(counts) == 5 for counts in runs().values()),
        SETTLE_TIMEOUT,
        lambda: f"{sum(map(len, runs().values()))} of {5 * len(task_user)} deliveries ran",
    )
    # One delivery settled the user's eight orders; the four others found nothing pending.
    assert {task_id: sorted(counts) for task_id, counts in runs().items()} == {
        task_id: [0, 0, 0, 0, 8] for task_id in task_user
    }
    assert all(TASK_RESULT.search(worker.log()) for worker in workers)  # both took part
    ledger.assert_settled_exactly_as_replayed()
    assert settled_counts(stack.logs("worker")) == Counter(dict.fromkeys(ledger.outcome, 1))


# --- 4. The worker's database connections terminated under load -------------------------------


def terminate_backends(database: str, application_name: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND application_name = %s AND pid <> pg_backend_pid()",
            [database, application_name],
        )
        return cursor.fetchone()[0]


def test_settlement_recovers_when_the_workers_database_connections_are_terminated(stack):
    # No beat: recovery relies on the task's autoretry on OperationalError/InterfaceError
    # (transactions/tasks.py) and on Django opening a new connection for the retry. The
    # application_name (a libpq option django-environ passes through from DATABASE_URL)
    # picks out the worker's connections and nobody else's.
    ledger = Ledger(seed=6)
    ledger.open_accounts(30)
    application_name = f"stockflow-worker-{stack.id}"
    worker = stack.worker(DATABASE_URL=stack.database_url(application_name))
    feeder = feeding(stack, ledger, rounds=10, per_round=10, pause=0.3)
    terminated = 0
    try:
        while feeder.is_alive():
            terminated += terminate_backends(stack.database_name, application_name)
            time.sleep(0.05)  # how often the fault strikes, not a condition
    finally:
        feeder.join()

    assert len(ledger.outcome) == 30 * 10 * 10
    ledger.wait_until_final()
    assert terminated >= 10, terminated  # the faults struck...
    assert " retry: Retry in " in worker.log()  # ...mid-settlement, and those settlements retried
    ledger.assert_settled_exactly_as_replayed()
    assert max(settled_counts(worker.log()).values()) == 1


# --- 5. A quote that should trigger an order arrives while Redis is down ------------------------


def test_an_order_whose_trigger_quote_arrives_while_redis_is_down_fills_once_it_is_back(
    stack, own_redis
):
    user = UserFactory(balance=Decimal("1000.00"))
    feed = UserFactory(username="feed-op", is_staff=True)
    StockDataFactory(ticker="ACME", close_price=Decimal("12.0000"))
    web = stack.web(workers=1, threads=4)
    stack.worker()
    stack.beat(SWEEP_INTERVAL_SECONDS="1", SWEEP_PENDING_AFTER_SECONDS="1")

    def post(who, path: str, body: dict) -> requests.Response:
        return requests.post(
            f"{web.url}{path}",
            json=body,
            headers={"Authorization": f"Token {who.auth_token.key}"},
            timeout=REQUEST_TIMEOUT,
        )

    order = post(
        user,
        "/transactions/",
        {
            "ticker": "ACME",
            "transaction_type": "buy",
            "transaction_volume": 10,
            "order_type": "limit",
            "limit_price": "10.00",
            "time_in_force": "gtc",
        },
    )
    assert (order.status_code, order.json()["status"]) == (201, "open"), order.content

    own_redis.kill()
    quote = {"open_price": "9.5", "close_price": "9.5", "high": "9.5", "low": "9.5", "volume": 1}
    stored = post(feed, "/stocks/", {"ticker": "ACME", **quote})
    assert stored.status_code == 201, stored.content  # stored; the check could not be queued
    time.sleep(2)
    txn = Transaction.objects.get(pk=order.json()["id"])
    assert txn.status == "open"

    own_redis.start()
    wait_for(
        lambda: Transaction.objects.get(pk=txn.pk).status != "open",
        SETTLE_TIMEOUT,
        "the order never filled after Redis came back",
    )

    txn.refresh_from_db()
    assert (txn.status, txn.filled_price, txn.transaction_price) == (
        "completed",
        Decimal("9.5000"),
        Decimal("95.00"),
    )
    user.refresh_from_db()
    assert (user.balance, user.reserved) == (Decimal("905.00"), Decimal("0.00"))
