"""User serializers: registration input and account detail."""

from django.contrib.auth.validators import UnicodeUsernameValidator
from rest_framework import serializers

from stockflow.fields import DecimalField, StrictCharField
from stockflow.money import (
    CASH_DECIMAL_PLACES,
    CASH_MAX_DIGITS,
    MAX_OPENING_BALANCE,
    OPENING_BALANCE_MAX_DIGITS,
)


class UserCreateSerializer(serializers.Serializer):
    username = StrictCharField(max_length=150, validators=[UnicodeUsernameValidator()])
    balance = DecimalField(
        max_digits=OPENING_BALANCE_MAX_DIGITS,
        decimal_places=CASH_DECIMAL_PLACES,
        min_value=0,
        help_text=f"Opening cash balance: >= 0 and below {MAX_OPENING_BALANCE:,}, at most "
        f"{CASH_DECIMAL_PLACES} places.",
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
            raise serializers.ValidationError(
                f"Ensure this value is less than {MAX_OPENING_BALANCE}."
            )
        return value


class UserSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    username = serializers.CharField(read_only=True)
    balance = serializers.DecimalField(
        max_digits=CASH_MAX_DIGITS, decimal_places=CASH_DECIMAL_PLACES, read_only=True
    )
    reserved = serializers.DecimalField(
        max_digits=CASH_MAX_DIGITS,
        decimal_places=CASH_DECIMAL_PLACES,
        read_only=True,
        help_text="Cash held by open buy orders.",
    )
    buying_power = serializers.DecimalField(
        max_digits=CASH_MAX_DIGITS,
        decimal_places=CASH_DECIMAL_PLACES,
        read_only=True,
        help_text="balance - reserved: what new orders and withdrawals may use.",
    )
    created_at = serializers.DateTimeField(read_only=True)

    class Meta:
        ref_name = "User"
        swagger_schema_fields = {
            "example": {
                "id": 7,
                "username": "alice",
                "balance": "10000.00",
                "reserved": "0.00",
                "buying_power": "10000.00",
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
                "reserved": "0.00",
                "buying_power": "10000.00",
                "created_at": "2025-01-02T21:00:00Z",
                "token": "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b",
            }
        }
