"""Factories for quotes."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import factory

from stocks.models import StockData


class StockDataFactory(factory.django.DjangoModelFactory[StockData]):
    class Meta:
        model = StockData

    ticker = "AAPL"
    open_price = Decimal("100.0000")
    close_price = Decimal("100.0000")
    high = factory.LazyAttribute(lambda o: max(Decimal(o.open_price), Decimal(o.close_price)))
    low = factory.LazyAttribute(lambda o: min(Decimal(o.open_price), Decimal(o.close_price)))
    volume = 1000
    timestamp = factory.Sequence(lambda n: datetime(2025, 1, 1, tzinfo=UTC) + timedelta(hours=n))
