"""User serializers: registration input, account detail, portfolio."""

from django.contrib.auth.validators import UnicodeUsernameValidator
from rest_framework import serializers

from stockflow.money import MAX_OPENING_BALANCE


class UserCreateSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150, validators=[UnicodeUsernameValidator()])
    balance = serializers.DecimalField(max_digits=15, decimal_places=2, min_value=0)
    password = serializers.CharField(
        write_only=True, required=False, max_length=128, style={"input_type": "password"}
    )

    class Meta:
        ref_name = "UserCreate"

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


class UserCreatedSerializer(UserSerializer):
    token = serializers.CharField(read_only=True, source="auth_token.key")

    class Meta:
        ref_name = "UserCreated"


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
