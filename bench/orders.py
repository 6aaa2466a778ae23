"""Order benchmark: concurrent submissions against a running StockFlow, then settlement.

    .venv/bin/python bench/orders.py --url http://127.0.0.1:8000 --users 20 --orders 2000

Registers users, posts a quote as staff (demo `admin` by default), fires random buys
and sells from a thread pool, reports submission latency and throughput, waits until
every order is final, reports settlement throughput, and checks each user's cash and
shares against what the completed orders imply (the DESIGN.md invariants, via the API).
"""

import argparse
import random
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import requests

FINAL = {"completed", "failed", "cancelled"}


def api(session, method, url, token=None, **kwargs):
    headers = {"Authorization": f"Token {token}"} if token else {}
    response = session.request(method, url, headers=headers, timeout=60, **kwargs)
    if response.status_code >= 500:
        sys.exit(f"{method} {url} -> {response.status_code}: {response.text[:300]}")
    return response


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--staff-user", default="admin")
    parser.add_argument("--staff-password", default="admin-pass-2025")
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    session = requests.Session()
    base = args.url.rstrip("/")

    staff = api(
        session,
        "POST",
        f"{base}/auth/token/",
        json={"username": args.staff_user, "password": args.staff_password},
    ).json()["token"]
    ticker = "B" + uuid.uuid4().hex[:6].upper()
    quote = {"ticker": ticker, "open_price": "10", "close_price": "10", "high": "10", "low": "10"}
    api(session, "POST", f"{base}/stocks/", staff, json={**quote, "volume": 1}).raise_for_status()

    users = []
    for i in range(args.users):
        body = {"username": f"bench-{ticker}-{i}", "balance": "1000.00"}
        created = api(session, "POST", f"{base}/users/", json=body).json()
        users.append(created)

    rng = random.Random(42)
    plan = [
        (rng.choice(users), rng.choice(["buy", "buy", "sell"]), rng.randint(1, 5))
        for _ in range(args.orders)
    ]
    latencies = []

    def submit(order):
        user, side, volume = order
        local = requests.Session()
        started = time.perf_counter()
        response = api(
            local,
            "POST",
            f"{base}/transactions/",
            user["token"],
            json={"ticker": ticker, "transaction_type": side, "transaction_volume": volume},
        )
        latencies.append(time.perf_counter() - started)
        return response.status_code

    started = time.perf_counter()
    with ThreadPoolExecutor(args.concurrency) as pool:
        statuses = list(pool.map(submit, plan))
    submit_seconds = time.perf_counter() - started
    assert statuses.count(201) == len(plan), f"non-201 answers: {set(statuses)}"

    def transactions_of(user):
        rows, offset = [], 0
        while True:
            page = api(
                session,
                "GET",
                f"{base}/transactions/{user['id']}/?limit=500&offset={offset}",
                user["token"],
            ).json()
            rows += page["results"]
            offset += 500
            if not page["next"]:
                return rows

    deadline = time.monotonic() + args.timeout
    while True:
        pending = sum(1 for u in users for t in transactions_of(u) if t["status"] not in FINAL)
        if not pending:
            break
        if time.monotonic() > deadline:
            sys.exit(f"{pending} orders still pending after {args.timeout}s")
        time.sleep(0.2)
    settle_seconds = time.perf_counter() - started

    violations = 0
    for user in users:
        txns = transactions_of(user)
        done = [t for t in txns if t["status"] == "completed"]
        cash = Decimal("1000.00")
        shares = 0
        for t in done:
            sign = -1 if t["transaction_type"] == "BUY" else 1
            cash += sign * Decimal(t["transaction_price"])
            shares -= sign * t["transaction_volume"]
        detail = api(session, "GET", f"{base}/users/{user['username']}/", user["token"]).json()
        portfolio = api(
            session, "GET", f"{base}/users/{user['username']}/portfolio/", user["token"]
        ).json()
        held = sum(p["quantity"] for p in portfolio["positions"] if p["ticker"] == ticker)
        if Decimal(detail["balance"]) != cash or held != shares or cash < 0:
            violations += 1
            print(
                f"VIOLATION {user['username']}: balance {detail['balance']} vs {cash}, "
                f"shares {held} vs {shares}"
            )

    ms = sorted(x * 1000 for x in latencies)
    print(f"orders: {len(plan)} from {args.users} users, concurrency {args.concurrency}")
    print(
        f"submit: {len(plan) / submit_seconds:.0f} orders/s; latency ms p50 "
        f"{statistics.median(ms):.1f} p95 {ms[int(len(ms) * 0.95) - 1]:.1f} "
        f"p99 {ms[int(len(ms) * 0.99) - 1]:.1f}"
    )
    print(
        f"all final after {settle_seconds:.1f}s: "
        f"{len(plan) / settle_seconds:.0f} orders/s end to end"
    )
    print(f"invariant violations: {violations}")
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
