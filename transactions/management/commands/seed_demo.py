"""Load demo data: a month of daily quotes for a few tickers, a demo user and a staff user.

Everything goes through the services an API client would reach (`quotes_ingest`,
`user_register`), so the demo data obeys every rule real data does. It lives here, in the
trading app, because a demo is something to trade with: quotes and accounts both.
Safe to run again: existing quotes and users are left as they are. Prints both tokens.

Passwords: SEED_ADMIN_PASSWORD / SEED_DEMO_PASSWORD (or --admin-password / --demo-password)
when set. Otherwise only the embedded default (SQLite, no Redis: a developer's own machine)
uses the well-known ones the README lists; anywhere else a random password is generated and
printed once, when the account is created, so no server ever has a guessable staff login.
"""

import random
import secrets
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db.transaction import atomic

from stockflow.money import quantize_price
from stocks.models import StockData
from stocks.services import quotes_ingest
from users.models import User
from users.services import user_register

# Ticker -> rough price level, volume level.
TICKERS = {
    "AAPL": (Decimal("190"), 55_000_000),
    "MSFT": (Decimal("415"), 21_000_000),
    "GOOGL": (Decimal("170"), 25_000_000),
    "AMZN": (Decimal("185"), 40_000_000),
    "NVDA": (Decimal("120"), 250_000_000),
}
TRADING_DAYS = 30
# The embedded default's passwords (README, "Demo accounts"); nowhere else.
EMBEDDED_PASSWORDS = {"demo": "demo-pass-2025", "admin": "admin-pass-2025"}


def _password(username: str, given: str | None) -> tuple[str, str]:
    """The password for a new demo account and where it came from."""
    if given:
        return given, "as configured"
    if settings.EMBEDDED_DATABASE and settings.EMBEDDED_REDIS:
        return EMBEDDED_PASSWORDS[username], "embedded default"
    return secrets.token_urlsafe(16), "generated now, shown once"


def _trading_days(count: int) -> list[datetime]:
    """The last `count` weekdays before today, each at the 21:00 UTC close."""
    days, day = [], datetime.now(UTC).date()
    while len(days) < count:
        day -= timedelta(days=1)
        if day.weekday() < 5:
            days.append(datetime.combine(day, time(21, 0), UTC))
    return sorted(days)


def _quotes(ticker: str, level: Decimal, volume: int, days: list[datetime]) -> list[dict]:
    rng = random.Random(ticker)  # deterministic per ticker
    close = level
    rows = []
    for ts in days:
        open_price = quantize_price(close * Decimal(str(1 + rng.uniform(-0.01, 0.01))))
        close = quantize_price(open_price * Decimal(str(1 + rng.uniform(-0.025, 0.025))))
        high = quantize_price(max(open_price, close) * Decimal(str(1 + rng.uniform(0, 0.012))))
        low = quantize_price(min(open_price, close) * Decimal(str(1 - rng.uniform(0, 0.012))))
        rows.append(
            {
                "ticker": ticker,
                "open_price": open_price,
                "close_price": close,
                "high": high,
                "low": low,
                "volume": int(volume * rng.uniform(0.6, 1.4)),
                "timestamp": ts,
            }
        )
    return rows


class Command(BaseCommand):
    help = "Load demo quotes, a demo user and a staff user (idempotent); print their tokens."

    def add_arguments(self, parser):
        parser.add_argument("--demo-password", default=settings.SEED_DEMO_PASSWORD or None)
        parser.add_argument("--admin-password", default=settings.SEED_ADMIN_PASSWORD or None)

    @atomic
    def handle(self, *args, **options):
        days = _trading_days(TRADING_DAYS)
        for ticker, (level, volume) in TICKERS.items():
            if not StockData.objects.filter(ticker=ticker).exists():
                quotes_ingest(quotes=_quotes(ticker, level, volume, days))

        accounts = (
            ("demo", Decimal("100000.00"), options["demo_password"], False),
            ("admin", Decimal("0.00"), options["admin_password"], True),
        )
        for username, balance, given, staff in accounts:
            user = User.objects.named(username).first()
            if user is None:
                password, origin = _password(username, given)
                user = user_register(
                    username=username, balance=balance, password=password, staff=staff
                )
                created = f"created now, password {password!r} ({origin})"
            else:
                created = "exists, left as it is"
            self.stdout.write(
                f"{'staff' if user.is_staff else 'demo '} user {user.username!r} "
                f"({created}): token {user.issue_token().key}"
            )
        self.stdout.write(f"quotes for {', '.join(TICKERS)}: {StockData.objects.count()} rows")
