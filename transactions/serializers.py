"""Transaction serializers: submission input, filters, and the transaction representation."""

from rest_framework import serializers

from stockflow.fields import TickerField, TimestampField

from .models import Transaction, TransactionType

MAX_VOLUME = 1_000_000_000


class TransactionTypeField(serializers.ChoiceField):
    """`buy` or `sell` in any case; stored upper-case."""

    def __init__(self, **kwargs):
        super().__init__(choices=TransactionType.values, **kwargs)

    def to_internal_value(self, data):
        if isinstance(data, str):
            data = data.strip().upper()
        return super().to_internal_value(data)


class TransactionSubmitSerializer(serializers.Serializer):
    user_id = serializers.IntegerField(
        required=False, min_value=1, help_text="Defaults to the caller's own account."
    )
    user = serializers.IntegerField(required=False, min_value=1, help_text="Synonym of user_id.")
    ticker = TickerField()
    transaction_type = TransactionTypeField(help_text="buy or sell, any case")
    transaction_volume = serializers.IntegerField(min_value=1, max_value=MAX_VOLUME)

    class Meta:
        ref_name = "TransactionSubmit"

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


class TransactionFilterSerializer(serializers.Serializer):
    start_timestamp = TimestampField(required=False)
    end_timestamp = TimestampField(required=False, end_of_day=True)

    class Meta:
        ref_name = "TransactionFilter"

    def validate(self, attrs):
        start, end = attrs.get("start_timestamp"), attrs.get("end_timestamp")
        if start and end and start > end:
            raise serializers.ValidationError(
                {"end_timestamp": ["end_timestamp must not be before start_timestamp."]}
            )
        return attrs
