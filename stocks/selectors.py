"""Quote reads: the latest quotes (cached; invalidated on ingest) and history."""

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from stockflow.cache import QUOTES_NAMESPACE, cached_json
from stockflow.filters import within

from .errors import UnknownTicker
from .models import StockData


def quote_as_dict(quote: StockData) -> dict:
    return {
        "id": quote.pk,
        "ticker": quote.ticker,
        "open_price": quote.open_price,
        "close_price": quote.close_price,
        "high": quote.high,
        "low": quote.low,
        "volume": quote.volume,
        "timestamp": quote.timestamp,
    }


def latest_quotes_json(*, represent: Callable[[list[dict]], Any]) -> bytes:
    """The latest quote of every ticker, as the response's JSON bytes (`represent` turns the
    quotes into response data), cached until the next ingest."""
    return cached_json(
        QUOTES_NAMESPACE,
        "latest",
        lambda: represent([quote_as_dict(q) for q in StockData.objects.latest_per_ticker()]),
    )


def latest_quote_json(*, ticker: str, represent: Callable[[dict], Any]) -> bytes:
    """The latest quote of `ticker` as the response's JSON bytes; UnknownTicker if it has
    none."""

    def load():
        quote = StockData.objects.filter(ticker=ticker).order_by("-timestamp").first()
        return represent(quote_as_dict(quote)) if quote else None

    body = cached_json(QUOTES_NAMESPACE, f"latest:{ticker}", load)
    if body is None:
        raise UnknownTicker(ticker=ticker)
    return body


def latest_close(*, ticker: str) -> Decimal | None:
    """The latest close from the database: prices that move money never come from the cache."""
    return (
        StockData.objects.filter(ticker=ticker)
        .order_by("-timestamp")
        .values_list("close_price", flat=True)
        .first()
    )


def latest_closes(*, tickers: list[str]) -> dict[str, Decimal]:
    return {
        q.ticker: q.close_price
        for q in StockData.objects.filter(ticker__in=tickers).latest_per_ticker()
    }


def quote_history(*, ticker: str, start: datetime | None, end: datetime | None):
    """That ticker's quotes in [start, end], oldest first."""
    quotes = within(StockData.objects.filter(ticker=ticker), start=start, end=end)
    return quotes.order_by("timestamp", "id")
