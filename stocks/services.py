"""Market data ingestion."""

from django.db import IntegrityError
from django.db.transaction import atomic

from stockflow.cache import QUOTES_NAMESPACE, invalidate_on_commit
from stockflow.exceptions import Conflict

from .models import StockData


def quotes_ingest(*, quotes: list[dict]) -> list[StockData]:
    """Store validated quotes all-or-nothing; a repeated (ticker, timestamp) is a 409."""
    seen = set()
    for quote in quotes:
        key = (quote["ticker"], quote["timestamp"])
        if key in seen:
            raise Conflict(
                f"Quote for {key[0]} at {key[1].isoformat()} appears twice in the request.",
                "duplicate_quote",
            )
        seen.add(key)
    rows = [StockData(**quote) for quote in quotes]
    try:
        with atomic():
            created = StockData.objects.bulk_create(rows)
            invalidate_on_commit(QUOTES_NAMESPACE)
    except IntegrityError as exc:
        raise Conflict(
            "A quote for the same ticker and timestamp already exists.", "duplicate_quote"
        ) from exc
    return created
