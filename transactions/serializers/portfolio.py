"""The portfolio's output: positions valued at the latest close, and the account."""

from rest_framework import serializers

from ..models import CASH, PRICE


class PositionSerializer(serializers.Serializer):
    ticker = serializers.CharField()
    quantity = serializers.IntegerField()
    reserved = serializers.IntegerField(help_text="Shares held by open sell orders.")
    available = serializers.IntegerField(help_text="quantity - reserved: what may be sold.")
    average_cost = serializers.DecimalField(
        **PRICE, help_text="Cash paid per share held, weighted, rounded up to 4 places."
    )
    last_price = serializers.DecimalField(**PRICE, allow_null=True)
    market_value = serializers.DecimalField(
        **CASH,
        allow_null=True,
        help_text="What selling the position at last_price would pay: rounded down.",
    )
    unrealized_pnl = serializers.DecimalField(
        **CASH,
        allow_null=True,
        help_text="market_value - average_cost x quantity (that cost rounded up).",
    )
    realized_pnl = serializers.DecimalField(
        **CASH,
        help_text="Sells' proceeds minus the average cost of the shares sold, that cost "
        "rounded up to the cent: never more than the cash the trades made.",
    )

    class Meta:
        ref_name = "PortfolioPosition"


class PortfolioSerializer(serializers.Serializer):
    username = serializers.CharField()
    cash = serializers.DecimalField(**CASH, help_text="The balance.")
    balance = serializers.DecimalField(**CASH)
    reserved = serializers.DecimalField(**CASH, help_text="Cash held by open buy orders.")
    buying_power = serializers.DecimalField(**CASH, help_text="balance - reserved.")
    positions = PositionSerializer(many=True)
    equity = serializers.DecimalField(**CASH, help_text="cash + the positions' market value.")
    realized_pnl = serializers.DecimalField(
        **CASH, help_text="Realized P&L of every position, closed ones included."
    )

    class Meta:
        ref_name = "Portfolio"
        swagger_schema_fields = {
            "example": {
                "username": "alice",
                "cash": "8087.50",
                "balance": "8087.50",
                "reserved": "1800.00",
                "buying_power": "6287.50",
                "positions": [
                    {
                        "ticker": "AAPL",
                        "quantity": 10,
                        "reserved": 4,
                        "available": 6,
                        "average_cost": "191.2500",
                        "last_price": "195.0000",
                        "market_value": "1950.00",
                        "unrealized_pnl": "37.50",
                        "realized_pnl": "12.40",
                    }
                ],
                "equity": "10037.50",
                "realized_pnl": "12.40",
            }
        }
