"""User serializers: registration input and account detail."""

import unicodedata

from django.contrib.auth.validators import UnicodeUsernameValidator
from rest_framework import serializers

from stockflow.fields import DecimalField, StrictCharField
from stockflow.money import (
    CASH_DECIMAL_PLACES,
    CASH_MAX_DIGITS,
    MAX_OPENING_BALANCE,
    OPENING_BALANCE_MAX_DIGITS,
)
from stockflow.text import canonical_username

from .models import USERNAME_MAX_LENGTH


class UsernameValidator(UnicodeUsernameValidator):
    """Django's username rule (letters, digits and @ . + - _), applied to the NFKC form, as
    Django's own forms store a name: "e\u0301" (e and a combining acute) is "\u00e9", a
    letter, though the combining mark alone is not one."""

    def __call__(self, value):
        super().__call__(unicodedata.normalize("NFKC", value))


class UserCreateSerializer(serializers.Serializer):
    username = StrictCharField(
        max_length=USERNAME_MAX_LENGTH,
        validators=[UsernameValidator()],
        help_text="Shown as typed. One account per name: spellings that are equal once "
        "NFKC-normalised and case-folded (`Alice`/`ALICE`, `\uff4e\uff49\uff4b`/`nik`, "
        "`stra\u00dfe`/`STRASSE`, `nik\u03c2`/`nik\u03a3`) are one name, for registration "
        "(409), reads and logins. Letters, digits and `@ . + - _`; at most "
        f"{USERNAME_MAX_LENGTH} characters, also once case-folded.",
    )
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

    def validate_username(self, value):
        if len(canonical_username(value)) > USERNAME_MAX_LENGTH:  # "ß" folds to "ss"
            raise serializers.ValidationError(
                f"Ensure this field has no more than {USERNAME_MAX_LENGTH} characters once "
                "case-folded."
            )
        return value

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
