"""Transaction serializers: submission input, filters, transactions and the portfolio."""

from rest_framework import serializers

from stockflow.fields import WS, TickerField, WholeNumberField
from stockflow.filters import TimeRangeSerializer
from stockflow.money import (
    CASH_DECIMAL_PLACES,
    CASH_MAX_DIGITS,
    MAX_ORDER_VOLUME,
    PRICE_DECIMAL_PLACES,
    PRICE_MAX_DIGITS,
)
from stockflow.text import upper_ascii

from .models import Transaction, TransactionType

CASH = {"max_digits": CASH_MAX_DIGITS, "decimal_places": CASH_DECIMAL_PLACES}
PRICE = {"max_digits": PRICE_MAX_DIGITS, "decimal_places": PRICE_DECIMAL_PLACES}


class TransactionTypeField(serializers.ChoiceField):
    """`buy` or `sell` in any case; stored upper-case."""

    def __init__(self, **kwargs):
        super().__init__(choices=TransactionType.values, **kwargs)

    def to_internal_value(self, data):
        if isinstance(data, str):
            data = upper_ascii(data)
        return super().to_internal_value(data)

    def openapi_schema(self, *, in_body: bool) -> dict:
        return {
            "type": "string",
            "pattern": f"^{WS}([Bb][Uu][Yy]|[Ss][Ee][Ll][Ll]){WS}$",
            "example": "buy",
        }


class TransactionSubmitSerializer(serializers.Serializer):
    user_id = WholeNumberField(
        required=False, min_value=1, help_text="Defaults to the caller's own account."
    )
    user = WholeNumberField(required=False, min_value=1, help_text="Synonym of user_id.")
    ticker = TickerField()
    transaction_type = TransactionTypeField(help_text="buy or sell, any case")
    transaction_volume = WholeNumberField(min_value=1, max_value=MAX_ORDER_VOLUME)

    class Meta:
        ref_name = "TransactionSubmit"
        swagger_schema_fields = {
            "example": {"ticker": "AAPL", "transaction_type": "buy", "transaction_volume": 10}
        }

    def validate(self, attrs):
        user_id, synonym = attrs.pop("user_id", None), attrs.pop("user", None)
        if user_id is not None and synonym is not None and user_id != synonym:
            raise serializers.ValidationError({"user": ["user and user_id name different users."]})
        attrs["user_id"] = user_id if user_id is not None else synonym
        return attrs


class TransactionSerializer(serializers.ModelSerializer):
    user_id = serializers.IntegerField(read_only=True)

    class Meta:
        model = Transaction
        ref_name = "Transaction"
        swagger_schema_fields = {
            "example": {
                "id": 311,
                "user_id": 7,
                "ticker": "AAPL",
                "transaction_type": "BUY",
                "transaction_volume": 10,
                "unit_price": "191.2500",
                "transaction_price": "1912.50",
                "status": "pending",
                "failure_reason": None,
                "timestamp": "2025-01-02T21:00:05Z",
                "settled_at": None,
            }
        }
        fields = [
            "id",
            "user_id",
            "ticker",
            "transaction_type",
            "transaction_volume",
            "unit_price",
            "transaction_price",
            "status",
            "failure_reason",
            "timestamp",
            "settled_at",
        ]
        read_only_fields = fields


class TransactionFilterSerializer(TimeRangeSerializer):
    start_name, end_name = "start_timestamp", "end_timestamp"

    class Meta:
        ref_name = "TransactionFilter"


class PositionSerializer(serializers.Serializer):
    ticker = serializers.CharField()
    quantity = serializers.IntegerField()
    average_cost = serializers.DecimalField(**PRICE)
    last_price = serializers.DecimalField(**PRICE, allow_null=True)
    market_value = serializers.DecimalField(**CASH, allow_null=True)
    unrealized_pnl = serializers.DecimalField(**CASH, allow_null=True)

    class Meta:
        ref_name = "PortfolioPosition"


class PortfolioSerializer(serializers.Serializer):
    username = serializers.CharField()
    cash = serializers.DecimalField(**CASH)
    positions = PositionSerializer(many=True)
    equity = serializers.DecimalField(**CASH)

    class Meta:
        ref_name = "Portfolio"
        swagger_schema_fields = {
            "example": {
                "username": "alice",
                "cash": "8087.50",
                "positions": [
                    {
                        "ticker": "AAPL",
                        "quantity": 10,
                        "average_cost": "191.2500",
                        "last_price": "195.0000",
                        "market_value": "1950.00",
                        "unrealized_pnl": "37.50",
                    }
                ],
                "equity": "10037.50",
            }
        }
