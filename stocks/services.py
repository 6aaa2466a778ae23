"""Market data ingestion and removal: every write to quotes, from any path, goes through here.

The API, the admin and the management commands all call these, so every quote is checked
the same way and upper-cased the same way, and every stored quote records a `quote` event
(the outbox, in the same transaction): its subscribers invalidate the cached latest quotes,
publish it to /ws/quotes/ and, in the trading app, check the ticker's open orders.
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError
from django.db.models import QuerySet
from django.db.transaction import atomic
from django.utils import timezone

from events.services import events_record
from stockflow.cache import QUOTES_NAMESPACE, invalidate_on_commit
from stockflow.text import upper_ascii

from .errors import DuplicateQuote, DuplicateQuoteInRequest, QuoteFromTheFuture
from .models import StockData
from .selectors import quote_as_dict


def quote_timestamp_check(*, timestamp: datetime, now: datetime | None = None) -> None:
    """Refuse a quote dated more than QUOTE_MAX_FUTURE_SECONDS ahead of the server's clock.

    A feed with a wrong clock or a mistyped year would otherwise become the ticker's latest
    quote, and price every market order, until time caught up with it.
    """
    allowed = settings.QUOTE_MAX_FUTURE_SECONDS
    if timestamp > (now or timezone.now()) + timedelta(seconds=allowed):
        raise QuoteFromTheFuture(seconds=allowed)


def quotes_ingest(*, quotes: list[dict]) -> list[StockData]:
    """Store quotes all-or-nothing; a repeated (ticker, timestamp) is a conflict."""
    now = timezone.now()
    rows, seen = [], set()
    for quote in quotes:
        quote = {**quote, "ticker": upper_ascii(quote["ticker"])}
        quote.setdefault("timestamp", now)
        quote_timestamp_check(timestamp=quote["timestamp"], now=now)
        key = (quote["ticker"], quote["timestamp"])
        if key in seen:
            raise DuplicateQuoteInRequest(ticker=key[0], timestamp=key[1].isoformat())
        seen.add(key)
        rows.append(StockData(**quote))
    try:
        with atomic():
            _mark_stale_quotes_checked(rows, now)
            created = StockData.objects.bulk_create(rows)
            _record_stored(created)
    except IntegrityError as exc:
        raise DuplicateQuote() from exc
    return created


def _mark_stale_quotes_checked(rows: list[StockData], now: datetime) -> None:
    """A quote no newer than its ticker's latest stored one triggers no order: mark it so."""
    latest = {
        quote.ticker: quote.timestamp
        for quote in StockData.objects.filter(
            ticker__in={row.ticker for row in rows}
        ).latest_per_ticker()
    }
    for row in rows:
        if row.ticker in latest and row.timestamp <= latest[row.ticker]:
            row.orders_checked_at = now


def _record_stored(quotes: list[StockData]) -> None:
    """One `quote` event per stored quote, carrying it as `POST /stocks/` answers it."""
    events_record([(None, "quote", {"quote": quote_as_dict(quote)}) for quote in quotes])


def quote_update(*, quote: StockData, **changes) -> StockData:
    """Correct a stored quote (an operator fixing bad data), checked like a new one."""
    if "ticker" in changes:
        changes["ticker"] = upper_ascii(changes["ticker"])
    if "timestamp" in changes:
        quote_timestamp_check(timestamp=changes["timestamp"])
    for name, value in changes.items():
        setattr(quote, name, value)
    try:
        with atomic():
            newest = StockData.objects.filter(ticker=quote.ticker).order_by("-timestamp").first()
            if newest is None or newest.timestamp <= quote.timestamp:
                # The ticker's latest close changed: its open orders are checked again.
                quote.orders_checked_at = None
                changes["orders_checked_at"] = None
            quote.save(update_fields=list(changes) or None)
            _record_stored([quote])
    except IntegrityError as exc:
        raise DuplicateQuote() from exc
    return quote


def quotes_delete(*, quotes: QuerySet[StockData]) -> int:
    """Delete quotes (an operator correcting bad data); returns how many were deleted."""
    with atomic():
        deleted, _ = quotes.delete()
        invalidate_on_commit(QUOTES_NAMESPACE)
    return deleted
