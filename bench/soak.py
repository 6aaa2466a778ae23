"""Soak test: real processes under load with faults injected at random; prints the invariants.

    .venv/bin/python bench/soak.py                      # 50 users, 20,000 orders
    .venv/bin/python bench/soak.py --orders 2000        # a short run

It creates its own PostgreSQL database and starts its own redis-server, gunicorn (4
workers), 2 Celery workers and beat (sweeper every 2 s). Clients submit random buys and
sells, and among them a deposit or withdrawal per TRANSFER_EVERY orders, each with an
Idempotency-Key, retrying on errors as a careful client would.
Meanwhile a fault thread, at random, SIGKILLs a Celery worker (and starts a new one),
stops Redis for a few seconds, terminates the database connections, or delivers the
same settlement task five times. At the end it waits for every transaction to be final
and checks DESIGN.md's invariants for every user. Exit status 1 on any violation.
Not part of CI (it takes minutes); README "Guarantees" quotes its last run.
"""

import argparse
import os
import random
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import psycopg2
import requests

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))  # run as a script: the harness lives in the project package

from stockflow.testing import (  # noqa: E402
    HarnessError,
    Process,
    RedisServer,
    Stack,
    create_database,
    drop_database,
    wait_for,
)

OPENING = Decimal("10000.00")
TICKERS = {"SOAKA": "12.3400", "SOAKB": "87.6500", "SOAKC": "250.1000"}
TRANSFER_EVERY = 50  # orders per deposit or withdrawal, placed among them
# The staff account seed_demo creates here (never the embedded default's well-known one).
STAFF_PASSWORD = "soak-staff-password"


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


class Soak(Stack):
    """The real system on a database and a redis-server of its own, each process in its own
    process group (stockflow/testing/)."""

    def __init__(self, args, workdir: Path):
        self.args = args
        self.db_name = f"stockflow_soak_{uuid.uuid4().hex[:8]}"
        self.server_url = args.postgres.rstrip("/")
        redis_server = RedisServer(workdir)
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "stockflow.settings",
            "DATABASE_URL": f"{self.server_url}/{self.db_name}",
            "REDIS_URL": redis_server.url(0),
            "SECRET_KEY": secrets.token_urlsafe(40),
            "CELERY_TASK_DEFAULT_QUEUE": "soak",
            "SWEEP_INTERVAL_SECONDS": "2",
            "SWEEP_PENDING_AFTER_SECONDS": "3",
            "CELERY_VISIBILITY_TIMEOUT": "30",
            "THROTTLE_ANON": "1000000/min",
            "THROTTLE_USER": "1000000/min",
            "LOG_LEVEL": "WARNING",
        }
        super().__init__(workdir, env, id="soak", redis_server=redis_server)
        self.url = ""
        self.workers: list[Process] = []
        self.others: list[Process] = []

    def start_worker(self, index: int) -> Process:
        # Gossip, mingle and heartbeat on, as in production: the soak has its broker alone.
        hostname = f"soak{index}-{uuid.uuid4().hex[:4]}@%h"
        return self.worker(hostname=hostname, loglevel="WARNING", isolated=False, wait=False)

    def start(self) -> None:
        create_database(self.server_url, self.db_name)
        self.redis.start()  # before the seed, whose cache writes would find it missing
        manage = [sys.executable, "manage.py"]
        subprocess.run([*manage, "migrate", "-v0"], cwd=BASE_DIR, env=self.env(), check=True)
        subprocess.run(
            [*manage, "seed_demo"],
            cwd=BASE_DIR,
            env=self.env(SEED_ADMIN_PASSWORD=STAFF_PASSWORD),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        # One thread each: gunicorn's sync workers.
        web = self.web(workers=self.args.web_workers, threads=1, timeout=60, wait=False)
        self.url = web.url
        self.others = [web, self.beat(loglevel="WARNING", wait=False)]
        self.workers = [self.start_worker(i) for i in range(self.args.celery_workers)]

        def healthy() -> bool:
            try:
                return requests.get(f"{self.url}/health/", timeout=5).json()["status"] == "ok"
            except requests.RequestException:
                return False

        try:
            wait_for(healthy, 60, "")
        except HarnessError:
            sys.exit("the stack did not become healthy; see " + str(self.directory))

    def stop(self) -> None:
        self.close()
        self.redis.stop()
        drop_database(self.server_url, self.db_name)

    def db(self):
        conn = psycopg2.connect(f"{self.server_url}/{self.db_name}")
        conn.autocommit = True
        return conn


class Faults:
    """Injects one random fault every few seconds until stopped; counts what it did."""

    def __init__(self, stack: Soak, interval: float, user_ids: list[int]):
        self.stack = stack
        self.interval = interval
        self.user_ids = user_ids
        self.done = Counter()
        self.stopping = threading.Event()

    def kill_worker(self):
        index = random.randrange(len(self.stack.workers))
        self.stack.workers[index].kill()
        self.stack.workers[index] = self.stack.start_worker(index)

    def redis_outage(self):
        self.stack.redis.kill()
        time.sleep(random.uniform(2, 5))
        self.stack.redis.start()

    def terminate_connections(self):
        with self.stack.db() as conn, conn.cursor() as cursor:
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                [self.stack.db_name],
            )

    def duplicate_delivery(self):
        user_id = random.choice(self.user_ids)
        for _ in range(5):
            self.stack.send_settle(user_id)

    def run(self):
        faults = [
            self.kill_worker,
            self.redis_outage,
            self.terminate_connections,
            self.duplicate_delivery,
        ]
        while not self.stopping.wait(random.uniform(0.5, 1.5) * self.interval):
            fault = random.choice(faults)
            try:
                fault()
                self.done[fault.__name__] += 1
                log(f"fault: {fault.__name__}")
            except Exception as exc:  # a fault that could not be injected is reported, not fatal
                log(f"fault {fault.__name__} failed to inject: {exc!r}")


def place_orders(stack: Soak, users: list[dict], count: int, concurrency: int) -> Counter:
    outcomes = Counter()
    rng = random.Random(7)
    plan = [
        (
            rng.choice(users),
            "/transactions/",
            {
                "ticker": rng.choice(list(TICKERS)),
                "transaction_type": "buy" if rng.random() < 0.6 else "sell",
                "transaction_volume": rng.randint(1, 20),
            },
        )
        for _ in range(count)
    ]
    transfers = random.Random(8)
    for _ in range(count // TRANSFER_EVERY):
        user = transfers.choice(users)
        cents = transfers.randint(1, 300_000)  # up to 3,000.00: withdrawals are often refused
        direction = transfers.choice(["deposit", "withdrawal"])
        body = {"direction": direction, "amount": f"{Decimal(cents) / 100:.2f}"}
        path = f"/users/{user['username']}/transfers/"
        plan.insert(transfers.randrange(len(plan) + 1), (user, path, body))

    def place(request):
        user, path, body = request
        kind = "transfer_" if path.endswith("/transfers/") else ""
        headers = {"Authorization": f"Token {user['token']}", "Idempotency-Key": uuid.uuid4().hex}
        for attempt in range(20):  # a careful client: retry with the same key
            try:
                response = requests.post(
                    f"{stack.url}{path}", json=body, headers=headers, timeout=30
                )
                if response.status_code in (200, 201):
                    return f"{kind}http_{response.status_code}" + ("_retried" if attempt else "")
                if kind and response.status_code == 409:  # a withdrawal beyond the buying power
                    return "transfer_http_409"
                outcomes[f"retry_after_{response.status_code}"] += 1
            except requests.RequestException as exc:
                outcomes[f"retry_after_{type(exc).__name__}"] += 1
            time.sleep(min(0.1 * 2**attempt, 3))
        return "gave_up"

    started = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        for i, outcome in enumerate(pool.map(place, plan), 1):
            outcomes[outcome] += 1
            if i % 2000 == 0:
                log(f"{i} requests placed ({i / (time.monotonic() - started):.0f}/s)")
    return outcomes


def check_invariants(stack: Soak, user_ids: list[int], timeout: float) -> int:
    with stack.db() as conn, conn.cursor() as cursor:
        deadline = time.monotonic() + timeout
        while True:
            cursor.execute("SELECT count(*) FROM transactions_transaction WHERE status='pending'")
            pending = cursor.fetchone()[0]
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(1)
        cursor.execute(
            "SELECT status, count(*) FROM transactions_transaction GROUP BY status ORDER BY 1"
        )
        log(f"transactions by status: {dict(cursor.fetchall())}")
        violations = 0
        for user_id in user_ids:
            cursor.execute(
                "SELECT u.balance, COALESCE(SUM(CASE WHEN t.transaction_type='BUY' "
                "THEN -t.transaction_price ELSE t.transaction_price END), 0) "
                "FROM users_user u LEFT JOIN transactions_transaction t "
                "ON t.user_id = u.id AND t.status = 'completed' WHERE u.id = %s GROUP BY u.id",
                [user_id],
            )
            balance, flow = cursor.fetchone()
            cursor.execute(
                "SELECT COALESCE(SUM(CASE WHEN direction='deposit' THEN amount "
                "ELSE -amount END), 0) FROM transactions_transfer WHERE user_id = %s",
                [user_id],
            )
            moved = cursor.fetchone()[0]  # deposits - withdrawals
            cursor.execute(
                "SELECT t.ticker, SUM(CASE WHEN t.transaction_type='BUY' THEN "
                "t.transaction_volume ELSE -t.transaction_volume END), "
                "(SELECT p.quantity FROM transactions_position p "
                " WHERE p.user_id = t.user_id AND p.ticker = t.ticker) "
                "FROM transactions_transaction t WHERE t.user_id = %s AND t.status = 'completed' "
                "GROUP BY t.user_id, t.ticker",
                [user_id],
            )
            shares = cursor.fetchall()
            problems = []
            if OPENING + moved + flow != balance:  # invariant 1
                problems.append(f"cash {balance} != {OPENING} + {moved} (transfers) + {flow}")
            if balance < 0:
                problems.append(f"negative balance {balance}")
            problems += [
                f"{ticker} position {held} != {expected}"
                for ticker, expected, held in shares
                if (held or 0) != expected or expected < 0
            ]
            if problems:
                violations += 1
                log(f"VIOLATION user {user_id}: {'; '.join(problems)}")
        cursor.execute("SELECT count(*) FROM transactions_position WHERE quantity < 0")
        violations += cursor.fetchone()[0]
    log(f"invariants: {len(user_ids)} users checked, {violations} violations, {pending} pending")
    return violations + pending


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--orders", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--web-workers", type=int, default=4)
    parser.add_argument("--celery-workers", type=int, default=2)
    parser.add_argument("--fault-interval", type=float, default=8.0, help="mean seconds")
    parser.add_argument("--postgres", default="postgres://root@127.0.0.1:5432")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="stockflow-soak-"))
    stack = Soak(args, workdir)
    log(f"starting the stack (logs in {workdir})")
    try:
        stack.start()
        session = requests.Session()
        staff = session.post(
            f"{stack.url}/auth/token/", json={"username": "admin", "password": STAFF_PASSWORD}
        ).json()
        for ticker, close in TICKERS.items():
            quote = {
                "ticker": ticker,
                "open_price": close,
                "close_price": close,
                "high": close,
                "low": close,
                "volume": 1,
            }
            session.post(
                f"{stack.url}/stocks/",
                json=quote,
                headers={"Authorization": f"Token {staff['token']}"},
            ).raise_for_status()
        users = [
            session.post(
                f"{stack.url}/users/", json={"username": f"soak{i}", "balance": str(OPENING)}
            ).json()
            for i in range(args.users)
        ]
        user_ids = [u["id"] for u in users]
        faults = Faults(stack, args.fault_interval, user_ids)
        injector = threading.Thread(target=faults.run, daemon=True)
        log(
            f"placing {args.orders} orders from {args.users} users, faults every "
            f"~{args.fault_interval:.0f}s"
        )
        started = time.monotonic()
        injector.start()
        outcomes = place_orders(stack, users, args.orders, args.concurrency)
        faults.stopping.set()
        injector.join()
        log(f"orders placed in {time.monotonic() - started:.0f}s: {dict(sorted(outcomes.items()))}")
        log(f"faults injected: {dict(faults.done)}")
        # Only the injector kills processes (and restarts them): any other death is a failure.
        dead = [p.name for p in [*stack.workers, *stack.others] if not p.running()]
        log(f"processes that died on their own: {dead or 'none'}")
        failures = check_invariants(stack, user_ids, timeout=300) + len(dead)
        failures += outcomes["gave_up"]
        with stack.db() as conn, conn.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM transactions_transaction")
            stored = cursor.fetchone()[0]
            cursor.execute("SELECT count(*) FROM transactions_transfer")
            transfers_stored = cursor.fetchone()[0]
        accepted = sum(n for k, n in outcomes.items() if k.startswith("http_2"))
        log(f"orders accepted {accepted}, transactions stored {stored} (must be equal)")
        failures += accepted != stored
        transferred = sum(n for k, n in outcomes.items() if k.startswith("transfer_http_2"))
        log(f"transfers made {transferred}, transfers stored {transfers_stored} (must be equal)")
        failures += transferred != transfers_stored
        log(f"total wall time {time.monotonic() - started:.0f}s")
        return 1 if failures else 0
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
