"""Transfer serializers: a deposit or withdrawal's input, and the ledger row."""

from rest_framework import serializers

from stockflow.errors import DomainError
from stockflow.fields import DecimalField
from stockflow.money import CASH_DECIMAL_PLACES, MAX_TRANSFER_AMOUNT
from stockflow.serializers import ReadOnlyModelSerializer

from ..models import CASH, Transfer, TransferDirection
from ..services import transfer_amount_check
from .orders import AnyCaseChoiceField


class TransferAmountField(DecimalField):
    """Cash in cents, > 0 and below MAX_TRANSFER_AMOUNT, as `transfer_amount_check` decides."""

    def __init__(self, **kwargs):
        super().__init__(**CASH, **kwargs)

    def to_internal_value(self, data):
        amount = super().to_internal_value(data)
        try:
            transfer_amount_check(amount=amount)
        except DomainError as exc:
            raise serializers.ValidationError(exc.detail) from exc
        return amount

    def openapi_schema(self, *, in_body: bool) -> dict:
        schema = super().openapi_schema(in_body=in_body)
        schema.update(
            minimum=0,
            exclusiveMinimum=True,
            maximum=int(MAX_TRANSFER_AMOUNT),
            exclusiveMaximum=True,
            example="2500.00",
        )
        return schema


class TransferCreateSerializer(serializers.Serializer):
    direction = AnyCaseChoiceField(
        choices=TransferDirection.values, help_text="deposit or withdrawal; any case."
    )
    amount = TransferAmountField(
        help_text=f"Greater than 0 and less than {MAX_TRANSFER_AMOUNT:,}, at most "
        f"{CASH_DECIMAL_PLACES} places. A withdrawal takes at most the buying power."
    )

    class Meta:
        ref_name = "TransferCreate"
        swagger_schema_fields = {"example": {"direction": "deposit", "amount": "2500.00"}}


class TransferSerializer(ReadOnlyModelSerializer):
    user_id = serializers.IntegerField(read_only=True)
    username = serializers.CharField(source="user.username", read_only=True)

    class Meta:
        model = Transfer
        ref_name = "Transfer"
        swagger_schema_fields = {
            "example": {
                "id": 58,
                "user_id": 7,
                "username": "alice",
                "direction": "deposit",
                "amount": "2500.00",
                "balance_after": "12500.00",
                "created_at": "2025-01-02T21:00:05Z",
            }
        }
        fields = ["id", "user_id", "username", "direction", "amount", "balance_after", "created_at"]
        read_only_fields = fields
