"""What /events/ reads and answers."""

from rest_framework import serializers

from stockflow.fields import StrictCharField, WholeNumberField
from stockflow.pagination import MAX_WHOLE_NUMBER

from .models import Event

EXAMPLE = {
    "seq": 3,
    "type": "transfer",
    "created_at": "2025-01-02T21:00:07.104220Z",
    "data": {
        "transfer": {
            "id": 58,
            "user_id": 7,
            "username": "alice",
            "direction": "deposit",
            "amount": "500.00",
            "balance_after": "10077.50",
            "created_at": "2025-01-02T21:00:07.104220Z",
        },
        "balance": "10077.50",
        "reserved": "0.00",
        "buying_power": "10077.50",
    },
}


class AccountField(StrictCharField):
    """An account by id or username."""

    def openapi_schema(self, *, in_body: bool) -> dict:
        return {"type": "string", "minLength": 1, "maxLength": self.max_length, "example": "alice"}


class EventQuerySerializer(serializers.Serializer):
    since = WholeNumberField(
        required=False,
        min_value=0,
        max_value=MAX_WHOLE_NUMBER,
        help_text="Only events with a greater `seq`: the last one you saw. Omitted: every kept "
        "event. Older than the oldest kept -> 410 `events_pruned`; past the latest -> 400.",
    )
    user = AccountField(
        required=False,
        max_length=150,
        help_text="Staff only: the account whose events to read, by id or username (an id "
        "first). Default: the caller's own.",
    )

    class Meta:
        ref_name = "EventQuery"


class EventSerializer(serializers.ModelSerializer):
    class Meta:
        model = Event
        ref_name = "Event"
        fields = ["seq", "type", "created_at", "data"]
        read_only_fields = fields
        swagger_schema_fields = {"example": EXAMPLE}
