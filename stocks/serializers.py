"""Quote serializers: validation of incoming quotes and the quote representation."""

from django.conf import settings
from django.utils import timezone
from rest_framework import serializers

from stockflow.fields import DecimalField, TickerField, TimestampField, WholeNumberField

PRICE = {"max_digits": 18, "decimal_places": 4, "help_text": "> 0, at most 4 decimal places."}
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
    volume = WholeNumberField(min_value=0, max_value=9_223_372_036_854_775_807)
    timestamp = TimestampField(required=False, help_text="Defaults to now.")

    class Meta:
        ref_name = "Quote"
        swagger_schema_fields = {"example": {"id": 1042, **QUOTE_EXAMPLE}}

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


class HistoryQuerySerializer(serializers.Serializer):
    start = TimestampField(required=False)
    end = TimestampField(required=False, end_of_day=True)

    class Meta:
        ref_name = "QuoteHistoryQuery"

    def validate(self, attrs):
        if "start" in attrs and "end" in attrs and attrs["start"] > attrs["end"]:
            raise serializers.ValidationError({"end": ["end must not be before start."]})
        return attrs
