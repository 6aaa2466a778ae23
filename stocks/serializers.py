"""Quote serializers: validation of incoming quotes and the quote representation."""

from django.conf import settings
from django.utils import timezone
from rest_framework import serializers

from stockflow.errors import DomainError
from stockflow.fields import DecimalField, TickerField, TimestampField, WholeNumberField
from stockflow.filters import TimeRangeSerializer
from stockflow.money import PRICE_DECIMAL_PLACES, PRICE_MAX_DIGITS

from .services import quote_timestamp_check

PRICE = {
    "max_digits": PRICE_MAX_DIGITS,
    "decimal_places": PRICE_DECIMAL_PLACES,
    "help_text": f"> 0, at most {PRICE_DECIMAL_PLACES} decimal places.",
}
MAX_QUOTE_VOLUME = 2**63 - 1  # PostgreSQL's bigint
QUOTE_EXAMPLE = {
    "ticker": "AAPL",
    "open_price": "189.5000",
    "close_price": "191.2500",
    "high": "192.0000",
    "low": "188.7500",
    "volume": 53211000,
    "timestamp": "2025-01-02T21:00:00Z",
}


class QuoteSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    ticker = TickerField()
    open_price = DecimalField(**PRICE)
    close_price = DecimalField(**PRICE)
    high = DecimalField(**PRICE)
    low = DecimalField(**PRICE)
    volume = WholeNumberField(min_value=0, max_value=MAX_QUOTE_VOLUME)
    timestamp = TimestampField(
        required=False,
        help_text=f"Defaults to now; at most {settings.QUOTE_MAX_FUTURE_SECONDS} seconds ahead "
        "of the server's clock.",
    )

    class Meta:
        ref_name = "Quote"
        swagger_schema_fields = {"example": {"id": 1042, **QUOTE_EXAMPLE}}

    def validate_timestamp(self, value):
        try:
            quote_timestamp_check(timestamp=value)
        except DomainError as exc:  # answered on the field, and in a list at its index
            raise serializers.ValidationError(exc.detail) from exc
        return value

    def validate(self, attrs):
        errors = {}
        for field in ("open_price", "close_price", "high", "low"):
            if attrs[field] <= 0:
                errors[field] = ["Ensure this value is greater than 0."]
        if errors:
            raise serializers.ValidationError(errors)
        if attrs["low"] > min(attrs["open_price"], attrs["close_price"]):
            raise serializers.ValidationError(
                {"low": ["low must be <= min(open_price, close_price)."]}
            )
        if attrs["high"] < max(attrs["open_price"], attrs["close_price"]):
            raise serializers.ValidationError(
                {"high": ["high must be >= max(open_price, close_price)."]}
            )
        attrs.setdefault("timestamp", timezone.now())
        return attrs


class QuoteListSerializer(serializers.ListSerializer):
    child = QuoteSerializer()

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_empty", False)
        kwargs.setdefault("max_length", settings.MAX_QUOTES_PER_REQUEST)
        super().__init__(*args, **kwargs)


class HistoryQuerySerializer(TimeRangeSerializer):
    class Meta:
        ref_name = "QuoteHistoryQuery"
