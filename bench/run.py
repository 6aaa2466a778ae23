"""`make bench`: StockFlow's speed on this machine, against its ceilings, in one run.

    .venv/bin/python -m bench.run            # make bench: the full run (minutes)
    .venv/bin/python -m bench.run --smoke    # make bench-smoke: seconds, checks it still works

Starts the real stack (bench/stack.py: the Procfile's web, worker, beat and ws on a
database and a redis-server of its own), drives it from this process with an async HTTP
client (aiohttp) and wrk, and prints one table, also written as JSON to bench/results/
(latest.json; smoke runs write smoke.json, which is not committed):

- settlement: users, market orders (70 % buys, 30 % sells of held shares) from concurrent
  clients: submitted/s, settled/s end to end, submit p50/p99, CPU seconds per order of each
  process, and DESIGN.md's invariants checked in the database for every user;
- reads at 32 connections (wrk): a quote, all quotes, an account and a portfolio;
- ceilings: a bare Django view (bench/ceiling.py) serving the same quote JSON from Redis
  under the same gunicorn settings, and `pgbench -N` on the same PostgreSQL;
- peak RSS of a web worker and of the Celery worker;
- scaling: the cost of ingesting quotes with 10,000 and then 100,000 open orders waiting, and
  with 10,000 and then 100,000 open trailing stops on the quoted ticker (quotes inside their
  band: no anchor moves, no stop is reached), and the check of one quote that moves them all;
- fan-out: WebSocket clients on /ws/quotes/, quotes/s delivered and the delay from ingestion.
"""

import argparse
import asyncio
import json
import os
import pickle
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import redis

from bench.stack import BASE_DIR, BenchStack, Usage, usage

RESULTS = BASE_DIR / "bench" / "results"
FINAL = ("completed", "failed", "cancelled", "expired")
OPENING = Decimal("1000000.00")
HELD = 100  # shares each user buys before the timed orders, so that sells have something
STAFF = ("bench-staff", "bench-staff-password-2026")
ROLES = ("web", "worker", "postgres", "redis")
SECTIONS = ("reads", "ceilings", "scaling", "fanout")


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def cpu_delta(before: dict[str, Usage], after: dict[str, Usage]) -> dict[str, float]:
    return {role: after[role].cpu - before[role].cpu for role in ROLES}


class Client:
    """The API over one aiohttp session; a 5xx ends the run (it is always a bug)."""

    def __init__(self, base: str, connections: int):
        self.base = base
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=connections),
            timeout=aiohttp.ClientTimeout(total=120),
        )

    async def call(self, method: str, path: str, token: str | None = None, body=None):
        headers = {"Authorization": f"Token {token}"} if token else {}
        async with self.session.request(
            method, self.base + path, json=body, headers=headers
        ) as response:
            data = await response.json(content_type=None)
            if response.status >= 500 or response.status in (401, 403):
                sys.exit(f"{method} {path} -> {response.status}: {str(data)[:300]}")
            return response.status, data

    async def close(self):
        await self.session.close()


def quote(ticker: str, close: str, volume: int, at: datetime) -> dict:
    return {
        "ticker": ticker,
        "open_price": close,
        "close_price": close,
        "high": close,
        "low": close,
        "volume": volume,
        "timestamp": at.isoformat(),
    }


async def bounded(concurrency: int, jobs):
    """Run the coroutine factories in `jobs`, at most `concurrency` at a time; their results."""
    results = [None] * len(jobs)
    next_job = iter(range(len(jobs)))

    async def runner():
        for index in next_job:
            results[index] = await jobs[index]()

    await asyncio.gather(*(runner() for _ in range(concurrency)))
    return results


class Bench:
    def __init__(self, args, stack: BenchStack):
        self.args = args
        self.stack = stack
        self.db = stack.db()
        self.staff_token = ""
        self.users: list[dict] = []
        self.ticker = "BENCH"
        self.results: dict = {}

    def sql(self, query: str, params=()) -> list[tuple]:
        with self.db.cursor() as cursor:
            cursor.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    # --- set-up ---------------------------------------------------------------------------

    async def setup(self, api: Client) -> None:
        username, password = STAFF
        env = {**self.stack.env(), "DJANGO_SUPERUSER_PASSWORD": password}
        command = ["createsuperuser", "--noinput", "--username", username, "--email", "b@x.org"]
        subprocess.run(
            [sys.executable, "manage.py", *command],
            cwd=BASE_DIR,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        _, data = await api.call(
            "POST", "/auth/token/", body={"username": username, "password": password}
        )
        self.staff_token = data["token"]
        at = datetime.now(UTC) - timedelta(hours=3)
        status, _ = await api.call(
            "POST", "/stocks/", self.staff_token, quote(self.ticker, "10.0000", 1, at)
        )
        assert status == 201, status

        async def register(i):
            body = {"username": f"bench-{i}", "balance": str(OPENING)}
            status, data = await api.call("POST", "/users/", body=body)
            assert status == 201, (status, data)
            return data

        self.users = await bounded(8, [lambda i=i: register(i) for i in range(self.args.users)])
        orders = [(user, "buy", HELD) for user in self.users]
        await self.submit_all(api, orders, concurrency=8)
        self.wait_final(0, timeout=120)

    async def submit_all(self, api: Client, orders, concurrency: int) -> list[float]:
        latencies = []

        async def submit(user, side, volume):
            body = {"ticker": self.ticker, "transaction_type": side, "transaction_volume": volume}
            started = time.perf_counter()
            status, data = await api.call("POST", "/transactions/", user["token"], body)
            latencies.append(time.perf_counter() - started)
            assert status == 201, (status, data)

        await bounded(concurrency, [lambda o=o: submit(*o) for o in orders])
        return latencies

    def unsettled(self, after_id: int) -> int:
        placeholders = ",".join(["%s"] * len(FINAL))
        return self.sql(
            f"SELECT count(*) FROM transactions_transaction WHERE id > %s "
            f"AND status NOT IN ({placeholders})",
            (after_id, *FINAL),
        )[0][0]

    def final(self, after_id: int) -> int:
        return self.sql(
            "SELECT count(*) FROM transactions_transaction WHERE id > %s AND status IN %s",
            (after_id, FINAL),
        )[0][0]

    def wait_final(self, after_id: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.unsettled(after_id):
            if time.monotonic() > deadline:
                sys.exit(f"{self.unsettled(after_id)} orders not final after {timeout:.0f}s")
            time.sleep(0.02)

    # --- settlement -----------------------------------------------------------------------

    async def settlement(self, api: Client) -> None:
        args = self.args
        rng = random.Random(42)
        plan = [
            (rng.choice(self.users), "buy" if rng.random() < 0.7 else "sell", rng.randint(1, 5))
            for _ in range(args.orders)
        ]
        sells = sum(1 for _, side, _ in plan if side == "sell")
        last_id = self.sql("SELECT coalesce(max(id), 0) FROM transactions_transaction")[0][0]
        log(
            f"settlement: {args.orders} market orders ({sells} sells) from {len(self.users)} "
            f"users, {args.concurrency} concurrent clients"
        )
        profiler = Profiler(self.stack, self.args.profile) if self.args.profile else None
        before = self.stack.usage()
        done = threading.Event()
        submitted = [0]

        def progress():
            while not done.wait(1):
                log(
                    f"  submitted {submitted[0]:>5} / {args.orders}, final {self.final(last_id):>5}"
                )

        reporter = threading.Thread(target=progress, daemon=True)
        reporter.start()
        started = time.time()
        latencies = []
        # One queue shared by the clients, so `submitted` counts as answers come.
        pending = list(reversed(plan))

        async def client():
            while pending:
                user, side, volume = pending.pop()
                body = {
                    "ticker": self.ticker,
                    "transaction_type": side,
                    "transaction_volume": volume,
                }
                t0 = time.perf_counter()
                status, data = await api.call("POST", "/transactions/", user["token"], body)
                latencies.append(time.perf_counter() - t0)
                assert status == 201, (status, data)
                submitted[0] += 1

        await asyncio.gather(*(client() for _ in range(args.concurrency)))
        submit_seconds = time.time() - started
        await asyncio.to_thread(self.wait_final, last_id, args.settle_timeout)
        done.set()
        after = self.stack.usage()
        if profiler:
            self.results["profile"] = profiler.stop()
            for role, frames in self.results["profile"].items():
                log(f"profile of {role}, share of samples in each frame (inclusive):")
                for frame, share in frames:
                    log(f"  {share:6.1%}  {frame}")
        last_final = self.sql(
            "SELECT extract(epoch FROM max(settled_at)) FROM transactions_transaction "
            "WHERE id > %s",
            (last_id,),
        )[0][0]
        settle_seconds = float(last_final) - started
        cpu = cpu_delta(before, after)
        counts = dict(
            self.sql(
                "SELECT status, count(*) FROM transactions_transaction WHERE id > %s GROUP BY 1",
                (last_id,),
            )
        )
        self.results["settlement"] = {
            "users": len(self.users),
            "orders": args.orders,
            "sells": sells,
            "concurrency": args.concurrency,
            "submitted_per_s": args.orders / submit_seconds,
            "settled_per_s": args.orders / settle_seconds,
            "submit_p50_ms": percentile(latencies, 0.50) * 1000,
            "submit_p99_ms": percentile(latencies, 0.99) * 1000,
            "statuses": counts,
            "cpu_ms_per_order": {role: cpu[role] * 1000 / args.orders for role in ROLES},
            "cpu_ms_per_order_total": sum(cpu.values()) * 1000 / args.orders,
            "kernel_share_of_cpu": {
                role: (after[role].system - before[role].system) / max(cpu[role], 1e-9)
                for role in ROLES
            },
            "invariant_violations": self.invariant_violations(),
        }

    def invariant_violations(self) -> list[str]:
        """DESIGN.md's invariants 1-4 and 6 for every user, from the database."""
        violations = []
        rows = self.sql(
            """
            SELECT u.username, u.balance, u.reserved,
                   coalesce(sum(CASE t.transaction_type WHEN 'BUY' THEN -t.transaction_price
                                ELSE t.transaction_price END)
                            FILTER (WHERE t.status = 'completed'), 0),
                   count(t.id) FILTER (WHERE t.status NOT IN %s AND t.status <> 'open'),
                   coalesce(sum(t.transaction_price)
                            FILTER (WHERE t.status = 'open' AND t.transaction_type = 'BUY'), 0)
            FROM users_user u LEFT JOIN transactions_transaction t ON t.user_id = u.id
            WHERE u.username LIKE 'bench-%%' AND NOT u.is_staff
            GROUP BY u.id
            """,
            (FINAL,),
        )
        flows = dict(
            self.sql(
                "SELECT user_id, sum(CASE direction WHEN 'deposit' THEN amount ELSE -amount END) "
                "FROM transactions_transfer GROUP BY 1"
            )
        )
        ids = dict(self.sql("SELECT username, id FROM users_user"))
        for username, balance, reserved, net, unfinished, reserved_open in rows:
            expected = OPENING + flows.get(ids[username], 0) + net
            if balance != expected or balance < 0:
                violations.append(f"{username}: balance {balance}, expected {expected}")
            if unfinished:
                violations.append(f"{username}: {unfinished} orders not final")
            if reserved != reserved_open or not 0 <= reserved <= balance:
                violations.append(f"{username}: reserved {reserved}, open buys {reserved_open}")
        for username, ticker, quantity, held in self.sql(
            """
            SELECT u.username, p.ticker, p.quantity, coalesce(
                (SELECT sum(CASE t.transaction_type WHEN 'BUY' THEN t.transaction_volume
                            ELSE -t.transaction_volume END)
                 FROM transactions_transaction t WHERE t.user_id = p.user_id
                 AND t.ticker = p.ticker AND t.status = 'completed'), 0)
            FROM transactions_position p JOIN users_user u ON u.id = p.user_id
            WHERE u.username LIKE 'bench-%%'
            """
        ):
            if quantity != held or quantity < 0:
                violations.append(f"{username}: {quantity} {ticker}, completed orders say {held}")
        return violations

    # --- reads ----------------------------------------------------------------------------

    def load(self, url: str, token: str | None = None) -> dict:
        """requests/s, p50 and p99 at --connections connections for --duration seconds."""
        args = self.args
        if shutil.which("wrk"):
            command = ["wrk", "-t2", f"-c{args.connections}", f"-d{args.duration}s", "--latency"]
            if token:
                command += ["-H", f"Authorization: Token {token}"]
            out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
            errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
            if errors:
                sys.exit(f"wrk {url}: {errors[1]} non-2xx answers\n{out}")
            return {
                "tool": "wrk",
                "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]),
                "p50_ms": wrk_ms(re.search(r"\s50%\s+([\d.]+\w+)", out)[1]),
                "p99_ms": wrk_ms(re.search(r"\s99%\s+([\d.]+\w+)", out)[1]),
            }
        return asyncio.run(aiohttp_load(url, token, args.connections, args.duration))

    async def warm(self, api: Client, paths: list[tuple[str, str | None]]) -> None:
        for path, token in paths:
            status, _ = await api.call("GET", path, token)
            assert status == 200, (path, status)

    def reads(self) -> None:
        user = self.users[0]
        base = self.stack.url
        paths = {
            "quote": (f"/stocks/{self.ticker}/", None),
            "quotes": ("/stocks/", None),
            "account": (f"/users/{user['username']}/", user["token"]),
            "portfolio": (f"/users/{user['username']}/portfolio/", user["token"]),
        }
        self.results["reads"] = {}
        for name, (path, token) in paths.items():
            log(f"reads: GET {path} for {self.args.duration}s at {self.args.connections} conns")
            self.results["reads"][name] = {"path": path, **self.load(base + path, token)}

    # --- ceilings -------------------------------------------------------------------------

    async def quote_body(self, api: Client) -> bytes:
        async with api.session.get(f"{api.base}/stocks/{self.ticker}/") as response:
            return await response.read()

    def ceilings(self, body: bytes) -> None:
        from bench.ceiling import QUOTE_KEY

        # django-redis' default key format (":<version>:<key>") and pickle serializer.
        client = redis.Redis.from_url(self.stack.cache_url)
        client.set(f":1:{QUOTE_KEY}", pickle.dumps(body, pickle.HIGHEST_PROTOCOL))
        client.close()
        process, url = self.stack.serve_ceiling()
        try:
            log(f"ceiling: bare Django view for {self.args.duration}s")
            self.results["ceiling_view"] = self.load(f"{url}/stocks/{self.ticker}/")
        finally:
            process.stop()
        self.results["pgbench"] = self.pgbench()

    def pgbench(self) -> dict:
        args = self.args
        server = urlsplit(self.stack.server_url)
        name = f"stockflow_pgbench_{uuid.uuid4().hex[:6]}"
        env = {
            **os.environ,
            "PGHOST": server.hostname or "127.0.0.1",
            "PGPORT": str(server.port or 5432),
            "PGUSER": server.username or "root",
        }
        if not shutil.which("pgbench"):
            return {"tps": None, "note": "pgbench not installed"}
        from stockflow.testing import create_database, drop_database

        create_database(self.stack.server_url, name)
        try:
            log(f"ceiling: pgbench -N -c 4 -j 2 for {args.duration}s")
            init = ["pgbench", "-i", "-q", "-s", "10", name]
            subprocess.run(init, env=env, check=True, capture_output=True)
            command = ["pgbench", "-N", "-n", "-c", "4", "-j", "2", "-T", str(args.duration), name]
            out = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
            tps = float(re.search(r"tps = ([\d.]+)", out.stdout)[1])
            return {"tps": tps, "command": "pgbench -N -n -c 4 -j 2 -T " + str(args.duration)}
        finally:
            drop_database(self.stack.server_url, name)

    # --- scaling --------------------------------------------------------------------------

    def add_open_orders(self, count: int, tickers: list[str]) -> None:
        """`count` open gtc orders that a close of 10 does not trigger: half limit buys at
        1.00 (act when close <= 1), half stop buys at 100 (act when close >= 100), spread
        over the bench users, each user's reservation raised by exactly what they hold."""
        ids = [u["id"] for u in self.users]
        collar = Decimal("1.05")
        self.sql(
            """
            WITH added AS (
                INSERT INTO transactions_transaction (
                    user_id, ticker, transaction_type, transaction_volume, unit_price,
                    transaction_price, status, timestamp, order_type, limit_price, stop_price,
                    time_in_force, rises_to, falls_to)
                SELECT (%(ids)s::bigint[])[1 + g %% cardinality(%(ids)s::bigint[])],
                       (%(tickers)s::text[])[1 + g %% cardinality(%(tickers)s::text[])],
                       'BUY', 1,
                       CASE WHEN g %% 2 = 0 THEN 1 ELSE 100 * %(collar)s END,
                       CASE WHEN g %% 2 = 0 THEN 1 ELSE 100 * %(collar)s END,
                       'open', now(),
                       CASE WHEN g %% 2 = 0 THEN 'limit' ELSE 'stop' END,
                       CASE WHEN g %% 2 = 0 THEN 1 END,
                       CASE WHEN g %% 2 = 1 THEN 100 END,
                       'gtc',
                       CASE WHEN g %% 2 = 1 THEN 100 END,
                       CASE WHEN g %% 2 = 0 THEN 1 END
                FROM generate_series(1, %(count)s) g
                RETURNING user_id, transaction_price)
            UPDATE users_user u SET reserved = u.reserved + a.total
            FROM (SELECT user_id, sum(transaction_price) total FROM added GROUP BY 1) a
            WHERE u.id = a.user_id
            """,
            {"ids": ids, "tickers": tickers, "collar": collar, "count": count},
        )
        # Now, not during the measurement: autovacuum would wake up for the rows just added.
        self.sql("VACUUM ANALYZE transactions_transaction")

    async def ingest(
        self, api: Client, tickers: list[str], count: int, start: int, base: datetime | None = None
    ) -> dict:
        """POST `count` quotes at 10.0000 one by one from 8 clients, the i-th `start + i`
        seconds after `base`; wait until each is checked."""
        base = base or datetime.now(UTC) - timedelta(hours=2)
        before = self.stack.usage()
        started = time.time()

        async def post(i):
            body = quote(tickers[i % len(tickers)], "10.0000", 1, base + timedelta(seconds=i))
            status, data = await api.call("POST", "/stocks/", self.staff_token, body)
            assert status == 201, (status, data)

        await bounded(8, [lambda i=i: post(i) for i in range(start, start + count)])
        deadline = time.monotonic() + 300
        while self.sql("SELECT count(*) FROM stocks_stockdata WHERE orders_checked_at IS NULL")[0][
            0
        ]:
            if time.monotonic() > deadline:
                sys.exit("quotes were not checked against the open orders within 300s")
            await asyncio.sleep(0.02)
        seconds = time.time() - started
        cpu = cpu_delta(before, self.stack.usage())
        return {
            "quotes": count,
            "seconds": seconds,
            "cpu_ms_per_quote": sum(cpu.values()) * 1000 / count,
            "worker_cpu_ms_per_quote": cpu["worker"] * 1000 / count,
            # postgres counts every backend of the server: on a shared one, others' work too
            "cpu_ms_per_quote_by_role": {role: cpu[role] * 1000 / count for role in ROLES},
        }

    async def scaling(self, api: Client) -> None:
        tickers = [f"SCALE{i}" for i in range(10)]
        at = datetime.now(UTC) - timedelta(hours=3)
        for ticker in tickers:
            await api.call("POST", "/stocks/", self.staff_token, quote(ticker, "10.0000", 1, at))
        rows = []
        waiting = 0
        for target in self.args.open_orders:
            self.add_open_orders(target - waiting, tickers)
            waiting = target
            log(f"scaling: {self.args.quotes} quotes with {waiting:,} open orders waiting")
            row = await self.ingest(
                api, tickers, self.args.quotes, start=len(rows) * self.args.quotes
            )
            triggered = self.sql(
                "SELECT count(*) FROM transactions_transaction WHERE ticker LIKE 'SCALE%%' "
                "AND status <> 'open'"
            )[0][0]
            assert triggered == 0, f"{triggered} scaling orders triggered"
            rows.append({"open_orders": waiting, **row})
        self.results["scaling"] = {
            "rows": rows,
            "ratio": rows[-1]["cpu_ms_per_quote"] / rows[0]["cpu_ms_per_quote"],
            "worker_ratio": rows[-1]["worker_cpu_ms_per_quote"]
            / rows[0]["worker_cpu_ms_per_quote"],
            "trailing": await self.trailing_scaling(api),
        }

    def add_trailing_stops(self, count: int, ticker: str, anchor: Decimal) -> None:
        """`count` open gtc trailing stop buys on `ticker` whose lowest close so far (their
        anchor, trail_low) is `anchor`: half trail by 5.00, half by 60 %, so that at an anchor
        of 9 their stops are 14 and 14.40 and a close of 10 neither moves nor reaches them.
        Spread over the bench users, each user's reservation raised by exactly what they hold
        (the stop plus the 5 % collar)."""
        ids = [u["id"] for u in self.users]
        self.sql(
            """
            WITH added AS (
                INSERT INTO transactions_transaction (
                    user_id, ticker, transaction_type, transaction_volume, unit_price,
                    transaction_price, status, timestamp, order_type, stop_price, trail_price,
                    trail_percent, time_in_force, rises_to, trail_low)
                SELECT (%(ids)s::bigint[])[1 + g %% cardinality(%(ids)s::bigint[])],
                       %(ticker)s, 'BUY', 1, stop * %(collar)s, stop * %(collar)s, 'open', now(),
                       'trailing_stop', stop,
                       CASE WHEN g %% 2 = 0 THEN 5 END,
                       CASE WHEN g %% 2 = 1 THEN 60 END,
                       'gtc', stop, %(anchor)s
                FROM (SELECT g, CASE WHEN g %% 2 = 0 THEN %(anchor)s + 5
                                     ELSE %(anchor)s * 1.6 END AS stop
                      FROM generate_series(1, %(count)s) g) stops
                RETURNING user_id, transaction_price)
            UPDATE users_user u SET reserved = u.reserved + a.total
            FROM (SELECT user_id, sum(transaction_price) total FROM added GROUP BY 1) a
            WHERE u.id = a.user_id
            """,
            {
                "ids": ids,
                "ticker": ticker,
                "anchor": anchor,
                "collar": Decimal("1.05"),
                "count": count,
            },
        )
        self.sql("VACUUM ANALYZE transactions_transaction")  # as add_open_orders: not measured

    async def move_all(self, api: Client, ticker: str, close: Decimal, at: datetime) -> dict:
        """One quote below every trailing stop's anchor: its check moves them all in one go.
        Its wall time from the POST until the quote is checked, and the task's own run time
        from the worker's log."""
        worker = self.stack.by_name["worker"]
        logged = len(worker.log())
        started = time.time()
        body = quote(ticker, str(close), 1, at)
        status, data = await api.call("POST", "/stocks/", self.staff_token, body)
        assert status == 201, (status, data)
        deadline = time.monotonic() + 300
        unchecked = "SELECT count(*) FROM stocks_stockdata WHERE orders_checked_at IS NULL"
        while self.sql(unchecked)[0][0]:
            if time.monotonic() > deadline:
                sys.exit("the quote that moves every trailing stop was not checked within 300s")
            await asyncio.sleep(0.02)
        seconds = time.time() - started
        runs = re.findall(
            r"check_orders_task\[[^\]]+\] succeeded in ([\d.]+)s", worker.log()[logged:]
        )
        moved = self.sql(
            "SELECT count(*) FROM transactions_transaction WHERE ticker = %s AND status = 'open' "
            "AND ready_price IS NULL AND trail_low = %s",
            (ticker, close),
        )[0][0]
        return {
            "close": close,
            "moved": moved,
            "seconds": seconds,
            "task_seconds": max(map(float, runs)) if runs else None,
        }

    async def trailing_scaling(self, api: Client) -> dict:
        """Quotes inside the band of --trailing-stops (10,000, then 100,000) trailing stops of
        one ticker (none moves or triggers: the steady state of a quiet market), then, after
        each row, the worst case: one quote below every anchor, whose check moves them all."""
        ticker, anchor = "TRAIL", Decimal("9.0000")
        base = datetime.now(UTC) - timedelta(hours=2)
        await api.call("POST", "/stocks/", self.staff_token, quote(ticker, "10.0000", 1, base))
        seconds_after_base = 1  # every quote newer than the last, so each one is checked
        rows, waiting = [], 0
        lowest = anchor
        for target in self.args.trailing_stops:
            self.add_trailing_stops(target - waiting, ticker, anchor)
            waiting = target
            log(f"scaling: {self.args.quotes} quotes with {waiting:,} trailing stops on {ticker}")
            row = await self.ingest(
                api, [ticker], self.args.quotes, start=seconds_after_base, base=base
            )
            seconds_after_base += self.args.quotes
            reached = self.sql(
                "SELECT count(*) FROM transactions_transaction WHERE ticker = %s "
                "AND (status <> 'open' OR ready_price IS NOT NULL)",
                (ticker,),
            )[0][0]
            assert reached == 0, f"{reached} trailing stops triggered by in-band quotes"
            lowest -= 1
            log(f"scaling: one quote at {lowest} moves all {waiting:,} trailing stops")
            at = base + timedelta(seconds=seconds_after_base)
            row["move_all"] = await self.move_all(api, ticker, lowest, at)
            seconds_after_base += 1
            assert row["move_all"]["moved"] == waiting, row["move_all"]
            log(
                f"  checked in {row['move_all']['seconds']:.2f}s (the task's own time in the table)"
            )
            rows.append({"trailing_stops": waiting, **row})
        self.sql("VACUUM ANALYZE transactions_transaction")  # the moved rows' old versions
        return {
            "ticker": ticker,
            "rows": rows,
            "ratio": rows[-1]["cpu_ms_per_quote"] / rows[0]["cpu_ms_per_quote"],
            "worker_ratio": rows[-1]["worker_cpu_ms_per_quote"]
            / rows[0]["worker_cpu_ms_per_quote"],
            "ratio_target": 1.5,
            "task_time_limit_s": int(self.stack.env().get("CELERY_TASK_TIME_LIMIT", 60)),
        }

    # --- fan-out --------------------------------------------------------------------------

    async def fanout(self, api: Client) -> None:
        args = self.args
        ticker = "FAN"
        at = datetime.now(UTC) - timedelta(hours=1)
        await api.call("POST", "/stocks/", self.staff_token, quote(ticker, "10.0000", 1, at))
        log(f"fan-out: {args.ws_clients} clients on /ws/quotes/, {args.ws_quotes} quotes")
        clients = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.fanout",
            self.stack.ws_url,
            "--clients",
            str(args.ws_clients),
            "--ticker",
            ticker,
            "--expect",
            str(args.ws_quotes),
            cwd=BASE_DIR,
            stdout=asyncio.subprocess.PIPE,
            limit=2**30,
        )
        line = await clients.stdout.readline()
        if line.strip() != b"ready":
            sys.exit(f"the fan-out clients did not connect: {line!r}")
        sent: dict[int, float] = {}
        before = self.stack.usage()["ws"].cpu
        client_cpu = usage([clients.pid]).cpu
        started = time.time()
        for n in range(1, args.ws_quotes + 1):  # one at a time, as a feed sends them, paced
            await asyncio.sleep(max(0, started + (n - 1) / args.ws_rate - time.time()))
            sent[n] = time.time()
            body = quote(ticker, "10.0000", n, at + timedelta(seconds=n))
            status, data = await api.call("POST", "/stocks/", self.staff_token, body)
            assert status == 201, (status, data)
        ws_cpu = self.stack.usage()["ws"].cpu - before
        client_cpu = usage([clients.pid]).cpu - client_cpu  # both before the clients exit
        result = json.loads(await clients.stdout.read())
        await clients.wait()
        delays, last = [], started
        for volume, arrivals in result["received"].items():
            for arrived in arrivals:
                delays.append(arrived - sent[int(volume)])
                last = max(last, arrived)
        expected = args.ws_clients * args.ws_quotes
        self.results["fanout"] = {
            "clients": args.ws_clients,
            "quotes": args.ws_quotes,
            "delivered": len(delays),
            "expected": expected,
            "offered_quotes_per_s": args.ws_rate,
            "deliveries_per_s": len(delays) / (last - started),
            "ws_cpu_ms_per_delivery": ws_cpu * 1000 / max(1, len(delays)),
            "client_cpu_ms_per_delivery": client_cpu * 1000 / max(1, len(delays)),
            "quotes_per_s": args.ws_quotes / (last - started),
            "delay_p50_ms": percentile(delays, 0.5) * 1000,
            "delay_p99_ms": percentile(delays, 0.99) * 1000,
        }

    # --- the run --------------------------------------------------------------------------

    async def run_http(self) -> bytes:
        api = Client(self.stack.url, self.args.concurrency)
        try:
            await self.setup(api)
            await self.settlement(api)
            body = await self.quote_body(api)
            user = self.users[0]
            await self.warm(
                api,
                [
                    (f"/stocks/{self.ticker}/", None),
                    ("/stocks/", None),
                    (f"/users/{user['username']}/", user["token"]),
                    (f"/users/{user['username']}/portfolio/", user["token"]),
                ],
            )
            return body
        finally:
            await api.close()

    async def run_later(self) -> None:
        api = Client(self.stack.url, 16)
        try:
            if "scaling" in self.args.only:
                await self.scaling(api)
            if "fanout" in self.args.only:
                await self.fanout(api)
        finally:
            await api.close()

    def run(self) -> dict:
        only = self.args.only
        body = asyncio.run(self.run_http())
        if "reads" in only:
            self.reads()
        if "ceilings" in only:
            self.ceilings(body)
        usage = self.stack.usage()
        self.results["rss_mb"] = {
            "web_worker": usage["web_worker"].peak_rss_mb,
            "celery_worker": usage["worker"].peak_rss_mb,
        }
        asyncio.run(self.run_later())
        return self.results


class Profiler:
    """py-spy sampling the web and worker process groups while the settlement runs; top
    frames by inclusive share of samples (collapsed stacks kept in `directory`)."""

    def __init__(self, stack: BenchStack, directory: Path):
        self.directory = directory
        self.recorders = {}
        for role in ("web", "worker"):
            out = directory / f"{role}.txt"
            command = [
                str(BASE_DIR / ".venv" / "bin" / "py-spy"),
                "record",
                "--format",
                "raw",
                "--rate",
                "250",
                "--subprocesses",
            ]
            command += ["--nonblocking", "-o", str(out), "--pid", str(stack.by_name[role].pid)]
            self.recorders[role] = (subprocess.Popen(command, stdout=subprocess.DEVNULL), out)

    def stop(self) -> dict[str, list[tuple[str, float]]]:
        tops = {}
        for role, (recorder, out) in self.recorders.items():
            recorder.send_signal(2)
            recorder.wait(timeout=60)
            tops[role] = top_frames(out.read_text())
        return tops


def top_frames(collapsed: str, count: int = 25) -> list[tuple[str, float]]:
    inclusive: dict[str, int] = {}
    total = 0
    for line in collapsed.splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack:
            continue
        n = int(samples)
        total += n
        # py-spy frames: "function (file:line)"; count each function once per stack.
        for frame in {re.sub(r":\d+\)$", ")", f) for f in stack.split(";")[1:]}:
            inclusive[frame] = inclusive.get(frame, 0) + n
    # Frames in most samples are the server's and the pool's own loops: not informative.
    ranked = [
        item for item in inclusive.items() if item[1] < 0.6 * total and "process " not in item[0]
    ]
    ranked = sorted(ranked, key=lambda item: -item[1])[:count]
    return [(frame, n / total) for frame, n in ranked]


def wrk_ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(\w+)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]


async def aiohttp_load(url: str, token: str | None, connections: int, duration: float) -> dict:
    """wrk's measurement with aiohttp, where wrk is not installed (it costs more CPU)."""
    headers = {"Authorization": f"Token {token}"} if token else {}
    latencies = []
    deadline = time.perf_counter() + duration
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as s:

        async def one():
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                async with s.get(url, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        sys.exit(f"GET {url} -> {response.status}")
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(one() for _ in range(connections)))
    return {
        "tool": "aiohttp (wrk not installed)",
        "requests_per_s": len(latencies) / duration,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }


def table(results: dict, meta: dict) -> str:
    s = results["settlement"]
    ceiling = results.get("ceiling_view", {}).get("requests_per_s")
    tps = results.get("pgbench", {}).get("tps")
    cpu = s["cpu_ms_per_order"]
    lines = [
        f"StockFlow bench, {meta['when']}, {meta['machine']}, commit {meta['commit']}",
        f"  {meta['stack']}",
        "",
        f"{'settlement':<34} {'value':>12}  {'vs ceiling':>10}",
        f"{'  orders (sells)':<34} {s['orders']:>7} ({s['sells']})",
        f"{'  submitted / s':<34} {s['submitted_per_s']:>12.0f}",
        f"{'  settled / s, end to end':<34} {s['settled_per_s']:>12.0f}  "
        + (f"{s['settled_per_s'] / tps:>10.1%} of pgbench -N" if tps else ""),
        f"{'  submit p50 / p99 ms':<34} {s['submit_p50_ms']:>5.1f} / {s['submit_p99_ms']:.1f}",
        f"{'  CPU ms / order web|wrk|pg|redis':<34} "
        + " | ".join(f"{cpu[r]:.2f}" for r in ROLES)
        + f"  (total {s['cpu_ms_per_order_total']:.2f})",
        f"{'  statuses':<34} " + ", ".join(f"{k} {v}" for k, v in sorted(s["statuses"].items())),
        f"{'  invariant violations':<34} {len(s['invariant_violations']):>12}",
    ]
    if "reads" in results:
        lines += [
            "",
            f"{'reads, ' + str(meta['connections']) + ' connections':<34} {'req/s':>12}  "
            f"{'vs ceiling':>10}  {'p50 ms':>7} {'p99 ms':>7}",
        ]
        for read in results["reads"].values():
            rate = read["requests_per_s"]
            share = f"{rate / ceiling:>10.0%}" if ceiling else f"{'':>10}"
            lines.append(
                f"{'  GET ' + read['path']:<34} {rate:>12.0f}  {share}  "
                f"{read['p50_ms']:>7.2f} {read['p99_ms']:>7.2f}"
            )
    if ceiling:
        c = results["ceiling_view"]
        lines += [
            f"{'  ceiling: bare Django + redis':<34} {ceiling:>12.0f}  {'100%':>10}  "
            f"{c['p50_ms']:>7.2f} {c['p99_ms']:>7.2f}",
            f"{'  ceiling: pgbench -N, 4 clients':<34} {tps or 0:>12.0f}  tps",
        ]
    lines += [
        "",
        f"{'peak RSS MB: web worker | celery':<34} {results['rss_mb']['web_worker']:>5.0f} | "
        f"{results['rss_mb']['celery_worker']:.0f}",
    ]
    if "scaling" in results:
        lines += ["", f"{'scaling: open orders waiting':<34} {'CPU ms/quote':>12}  {'wall s':>10}"]
        for row in results["scaling"]["rows"]:
            label = f"  {row['open_orders']:,} ({row['quotes']} quotes)"
            lines.append(f"{label:<34} {row['cpu_ms_per_quote']:>12.2f}  {row['seconds']:>10.1f}")
        lines.append(f"{'  ratio, last / first':<34} {results['scaling']['ratio']:>12.2f}")
        lines.append(
            f"{'  the worker alone (the check)':<34} {results['scaling']['worker_ratio']:>12.2f}"
        )
        trailing = results["scaling"].get("trailing")
        if trailing:
            lines += [
                "",
                f"{'scaling: trailing stops, 1 ticker':<34} {'CPU ms/quote':>12}  {'wall s':>10}",
                "  (quotes inside their band: no anchor moves, no stop is reached)",
            ]
            for row in trailing["rows"]:
                label = f"  {row['trailing_stops']:,} ({row['quotes']} quotes)"
                lines.append(
                    f"{label:<34} {row['cpu_ms_per_quote']:>12.2f}  {row['seconds']:>10.1f}"
                )
            lines.append(
                f"{'  ratio, last / first':<34} {trailing['ratio']:>12.2f}  "
                f"(target <= {trailing['ratio_target']})"
            )
            lines.append(
                f"{'  the worker alone (the check)':<34} {trailing['worker_ratio']:>12.2f}"
            )
            limit = trailing["task_time_limit_s"]
            for row in trailing["rows"]:
                moved = row["move_all"]
                task = moved["task_seconds"]
                label = f"  1 quote moving all {row['trailing_stops']:,}"
                lines.append(
                    f"{label:<34} {'':>12}  {moved['seconds']:>10.2f}  "
                    + (f"(the task {task:.2f} s; " if task is not None else "(")
                    + f"limit {limit} s)"
                )
    if "fanout" in results:
        f = results["fanout"]
        lines += [
            "",
            f"fan-out: {f['clients']} clients on /ws/quotes/",
            f"{'  delivered / expected':<34} {f['delivered']:>7} / {f['expected']}",
            f"{'  quotes / s (deliveries / s)':<34} {f['quotes_per_s']:>12.1f} "
            f"({f['deliveries_per_s']:.0f})",
            f"{'  quotes / s offered':<34} {f['offered_quotes_per_s']:>12.1f}",
            f"{'  delay p50 / p99 ms':<34} {f['delay_p50_ms']:>5.1f} / {f['delay_p99_ms']:.1f}",
            f"{'  CPU ms / delivery: ws | clients':<34} {f['ws_cpu_ms_per_delivery']:>5.3f} | "
            f"{f['client_cpu_ms_per_delivery']:.3f}",
        ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: seconds, for CI")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--orders", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=int, default=15, help="seconds per read load")
    parser.add_argument("--web-workers", type=int, default=4)
    parser.add_argument("--worker-concurrency", type=int, default=2)
    parser.add_argument("--ws-workers", type=int, default=2, help="uvicorn processes for /ws/")
    parser.add_argument("--open-orders", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--quotes", type=int, default=1000, help="quotes per scaling row")
    parser.add_argument("--trailing-stops", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--ws-clients", type=int, default=500)
    parser.add_argument("--ws-quotes", type=int, default=50)
    parser.add_argument("--ws-rate", type=float, default=5, help="quotes/s sent to the clients")
    parser.add_argument("--settle-timeout", type=float, default=300)
    parser.add_argument(
        "--postgres", default=os.environ.get("BENCH_POSTGRES", "postgres://root@127.0.0.1:5432")
    )
    parser.add_argument(
        "--only",
        type=lambda text: set(text.split(",")),
        default=set(SECTIONS),
        help="comma-separated sections after the settlement: " + ",".join(SECTIONS),
    )
    parser.add_argument("--keep", action="store_true", help="keep the processes' logs")
    parser.add_argument("--profile", type=Path, help="py-spy the settlement into this folder")
    args = parser.parse_args()
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    if args.smoke:
        args.users, args.orders, args.duration, args.quotes = 5, 60, 1, 20
        args.open_orders, args.ws_clients, args.ws_quotes, args.ws_rate = [100, 1000], 5, 5, 20
        args.trailing_stops = [100, 1000]
    stack_line = (
        f"gunicorn {args.web_workers} sync workers, celery worker -c {args.worker_concurrency}, "
        f"beat, uvicorn ws --workers {args.ws_workers}; DEBUG off, throttles off"
    )
    meta = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} CPUs, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}",
        "stack": stack_line,
        "connections": args.connections,
        "command": "make bench-smoke" if args.smoke else "make bench",
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=BASE_DIR, capture_output=True, text=True
        ).stdout.strip(),
    }
    workdir = Path(tempfile.mkdtemp(prefix="stockflow-bench-"))
    stack = BenchStack(
        workdir,
        postgres=args.postgres,
        web_workers=args.web_workers,
        worker_concurrency=args.worker_concurrency,
        ws_workers=args.ws_workers,
    )
    log(f"starting the stack ({stack_line}); logs in {workdir}")
    try:
        stack.start()
        results = Bench(args, stack).run()
    finally:
        stack.stop()
    print()
    print(table(results, meta))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / ("smoke.json" if args.smoke else "latest.json")
    out.write_text(json.dumps({"meta": meta, **results}, indent=2, default=str) + "\n")
    print(f"\nwritten to {out.relative_to(BASE_DIR)}")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if results["settlement"]["invariant_violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
