"""User serializers: registration input, account detail, portfolio."""

from django.contrib.auth.validators import UnicodeUsernameValidator
from rest_framework import serializers

from stockflow.fields import DecimalField, StrictCharField
from stockflow.money import MAX_OPENING_BALANCE


class UserCreateSerializer(serializers.Serializer):
    username = StrictCharField(max_length=150, validators=[UnicodeUsernameValidator()])
    balance = DecimalField(
        max_digits=15,
        decimal_places=2,
        min_value=0,
        help_text="Opening cash balance: >= 0 and below 1,000,000,000,000, at most 2 places.",
    )
    # Taken as typed: a password is never trimmed, or "  secret" could not log in again.
    password = StrictCharField(
        write_only=True,
        required=False,
        max_length=128,
        style={"input_type": "password"},
        help_text="Optional; needed only for POST /auth/token/. Django's password rules apply.",
    )

    class Meta:
        ref_name = "UserCreate"
        swagger_schema_fields = {
            "example": {"username": "alice", "balance": "10000.00", "password": "correct-horse-42"}
        }

    def validate_balance(self, value):
        if value >= MAX_OPENING_BALANCE:
            raise serializers.ValidationError("Ensure this value is less than 1000000000000.")
        return value


class UserSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    username = serializers.CharField(read_only=True)
    balance = serializers.DecimalField(max_digits=30, decimal_places=2, read_only=True)
    created_at = serializers.DateTimeField(read_only=True)

    class Meta:
        ref_name = "User"
        swagger_schema_fields = {
            "example": {
                "id": 7,
                "username": "alice",
                "balance": "10000.00",
                "created_at": "2025-01-02T21:00:00Z",
            }
        }


class UserCreatedSerializer(UserSerializer):
    token = serializers.CharField(read_only=True, source="auth_token.key")

    class Meta:
        ref_name = "UserCreated"
        swagger_schema_fields = {
            "example": {
                "id": 7,
                "username": "alice",
                "balance": "10000.00",
                "created_at": "2025-01-02T21:00:00Z",
                "token": "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b",
            }
        }


class PositionSerializer(serializers.Serializer):
    ticker = serializers.CharField()
    quantity = serializers.IntegerField()
    average_cost = serializers.DecimalField(max_digits=18, decimal_places=4)
    last_price = serializers.DecimalField(max_digits=18, decimal_places=4, allow_null=True)
    market_value = serializers.DecimalField(max_digits=30, decimal_places=2, allow_null=True)
    unrealized_pnl = serializers.DecimalField(max_digits=30, decimal_places=2, allow_null=True)

    class Meta:
        ref_name = "PortfolioPosition"


class PortfolioSerializer(serializers.Serializer):
    username = serializers.CharField()
    cash = serializers.DecimalField(max_digits=30, decimal_places=2)
    positions = PositionSerializer(many=True)
    equity = serializers.DecimalField(max_digits=30, decimal_places=2)

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
