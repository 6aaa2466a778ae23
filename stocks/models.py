"""Quotes: one OHLCV row per ticker and timestamp, sanity-checked by the database too."""

from django.db import models
from django.db.models import F, Q

from stockflow.money import PRICE_DECIMAL_PLACES, PRICE_MAX_DIGITS
from stockflow.text import TICKER_MAX_LENGTH


class StockDataQuerySet(models.QuerySet):
    def latest_per_ticker(self):
        """The newest quote of every ticker, sorted by ticker (one indexed lookup each)."""
        newest = (
            StockData.objects.filter(ticker=models.OuterRef("ticker"))
            .order_by("-timestamp")
            .values("pk")[:1]
        )
        return self.filter(pk=models.Subquery(newest)).order_by("ticker")


class StockData(models.Model):
    ticker = models.CharField(max_length=TICKER_MAX_LENGTH)
    open_price = models.DecimalField(
        max_digits=PRICE_MAX_DIGITS, decimal_places=PRICE_DECIMAL_PLACES
    )
    close_price = models.DecimalField(
        max_digits=PRICE_MAX_DIGITS, decimal_places=PRICE_DECIMAL_PLACES
    )
    high = models.DecimalField(max_digits=PRICE_MAX_DIGITS, decimal_places=PRICE_DECIMAL_PLACES)
    low = models.DecimalField(max_digits=PRICE_MAX_DIGITS, decimal_places=PRICE_DECIMAL_PLACES)
    volume = models.BigIntegerField()
    timestamp = models.DateTimeField()
    # When the open orders this quote may trigger were checked; NULL until a worker did.
    # A quote no newer than its ticker's latest when stored is checked at once: it
    # triggers nothing.
    orders_checked_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = StockDataQuerySet.as_manager()

    class Meta:
        verbose_name = "quote"
        constraints = [
            models.UniqueConstraint(fields=["ticker", "timestamp"], name="quote_unique_ticker_ts"),
            models.CheckConstraint(
                condition=Q(open_price__gt=0, close_price__gt=0, high__gt=0, low__gt=0),
                name="quote_prices_positive",
            ),
            models.CheckConstraint(
                condition=Q(low__lte=F("open_price")) & Q(low__lte=F("close_price")),
                name="quote_low_is_lowest",
            ),
            models.CheckConstraint(
                condition=Q(high__gte=F("open_price")) & Q(high__gte=F("close_price")),
                name="quote_high_is_highest",
            ),
            models.CheckConstraint(condition=Q(volume__gte=0), name="quote_volume_non_negative"),
        ]
        indexes = [
            models.Index(fields=["ticker", "-timestamp"], name="quote_ticker_ts_desc"),
            models.Index(
                fields=["ticker", "timestamp"],
                condition=Q(orders_checked_at__isnull=True),
                name="quote_orders_unchecked",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.ticker} @ {self.timestamp:%Y-%m-%d %H:%M:%S}"
