"""Serializer fields shared by the apps: strict input forms that the schema can state exactly.

DRF's stock fields accept more than they say: `IntegerField` takes "٣" (an Arabic-Indic
digit) and `CharField` takes the number 7 as "7". Each field here accepts one documented
set of JSON values and describes that set itself (`openapi_schema`), so /swagger.json
and the validation can never drift apart. Swagger 2.0 has neither `oneOf` nor type lists:
a body value accepted as a JSON number or a string is stated without a `type`, its
`pattern` constraining the strings and `minimum`/`maximum` the numbers.
"""

import re
from datetime import UTC, datetime, time
from decimal import Decimal

from django.core.validators import RegexValidator
from django.utils.dateparse import parse_date, parse_datetime
from rest_framework import serializers

from .text import JSON_WHITESPACE, TICKER_MAX_LENGTH, TICKER_REGEX, upper_ascii

MIN_EPOCH = 0
MAX_EPOCH = 253_402_300_799  # 9999-12-31T23:59:59Z
MAX_TIMESTAMP_LENGTH = 40
EPOCH_RE = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")
WS = "[ \\t\\n\\r]*"  # the same, as a pattern for the schema
# What Decimal() reads, less its NaN/Infinity, underscores and non-ASCII digits.
DECIMAL_STRING = re.compile(rf"^{WS}[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?{WS}$")
WHOLE_NUMBER_STRING = re.compile(r"^[0-9]+$")
TICKER_INPUT_PATTERN = rf"^{WS}[A-Za-z0-9.\-]{{1,{TICKER_MAX_LENGTH}}}{WS}$"
TIMESTAMP_FORMAT = "timestamp"  # a format of our own: ISO 8601 date or datetime, or epoch seconds
TIMESTAMP_DESCRIPTION = (
    "ISO 8601 date (`2025-01-02`) or datetime (`2025-01-02T21:00:00Z`; without an offset it "
    "is UTC), or Unix epoch seconds (`1735851600`)."
)


def parse_timestamp(value, *, end_of_day: bool = False) -> datetime:
    """ISO 8601 date or datetime, or Unix epoch seconds, as an aware UTC datetime.

    A bare date means its first instant, or with `end_of_day` its last one, so an
    inclusive range `2025-01-01..2025-01-31` covers the whole of both days.
    """
    text = str(value).strip()
    if not text or len(text) > MAX_TIMESTAMP_LENGTH or isinstance(value, bool):
        raise ValueError("empty or overlong timestamp")
    if not text.isascii():  # Django's parsers would read "\u0662\u0660\u0662\u0665" as 2025
        raise ValueError("a timestamp is ASCII")
    if EPOCH_RE.match(text):
        seconds = float(text)
        if not MIN_EPOCH <= seconds <= MAX_EPOCH:
            raise ValueError("epoch seconds out of range")
        return datetime.fromtimestamp(seconds, tz=UTC)
    parsed_date = parse_date(text) if len(text) == 10 else None
    if parsed_date is not None:
        return datetime.combine(parsed_date, time.max if end_of_day else time.min, UTC)
    parsed = parse_datetime(text)
    if parsed is None:
        raise ValueError("not an ISO 8601 date/datetime or epoch seconds")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError as exc:  # e.g. 9999-12-31T23:59:59-01:00 is past year 9999 in UTC
        raise ValueError("timestamp out of range in UTC") from exc


def _string_or_number(*, in_body: bool) -> dict:
    # Query and path parameters are strings on the wire; only a body has JSON types.
    return {"type": None if in_body else "string"}


class TimestampField(serializers.DateTimeField):
    """Accepts ISO 8601 date, datetime (naive means UTC) or epoch seconds."""

    default_error_messages = {
        "invalid": "Enter an ISO 8601 date or datetime (2025-01-01T10:00:00Z) or Unix epoch "
        "seconds."
    }

    def __init__(self, *args, end_of_day: bool = False, **kwargs):
        self.end_of_day = end_of_day
        super().__init__(*args, **kwargs)

    def to_internal_value(self, value):
        if not isinstance(value, str | int | Decimal) or isinstance(value, bool):
            self.fail("invalid")
        try:
            return parse_timestamp(value, end_of_day=self.end_of_day)
        except (ValueError, OverflowError, OSError):
            self.fail("invalid")

    def openapi_schema(self, *, in_body: bool) -> dict:
        schema = _string_or_number(in_body=in_body)
        schema.update(format=TIMESTAMP_FORMAT, description=TIMESTAMP_DESCRIPTION)
        if in_body:
            schema.update(minimum=MIN_EPOCH, maximum=MAX_EPOCH)
        return schema


class StrictCharField(serializers.CharField):
    """A JSON string, taken as sent: DRF's would turn 7 into "7" and trim any whitespace."""

    def __init__(self, **kwargs):
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class TickerField(StrictCharField):
    """1-10 characters of A-Z 0-9 . - ; case-insensitive on input, stored upper-case."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", TICKER_MAX_LENGTH)
        super().__init__(**kwargs)
        self.validators.append(
            RegexValidator(TICKER_REGEX, "A ticker is 1-10 characters of A-Z, 0-9, '.' and '-'.")
        )

    def to_internal_value(self, data):
        return upper_ascii(super().to_internal_value(data))

    def openapi_schema(self, *, in_body: bool) -> dict:
        return {"type": "string", "pattern": TICKER_INPUT_PATTERN, "example": "AAPL"}


class DecimalField(serializers.DecimalField):
    """A decimal from a JSON number or a plain decimal string ("155.00"); never a float.

    DRF's also reads "1_000", "١٢٣" and other spellings that Decimal() accepts.
    Negative zero ("-0", "-0.00", "-0e3", the number -0.0) is zero: Decimal keeps the sign,
    so it would pass `min_value=0` and be shown back as "-0.00".
    """

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, str | int | Decimal):
            self.fail("invalid")
        if isinstance(data, str):
            if not DECIMAL_STRING.fullmatch(data):
                self.fail("invalid")
            data = data.strip(JSON_WHITESPACE)
        value = super().to_internal_value(data)
        return value.copy_abs() if value.is_zero() else value

    def openapi_schema(self, *, in_body: bool) -> dict:
        schema = _string_or_number(in_body=in_body)
        schema.update(format="decimal", pattern=DECIMAL_STRING.pattern)
        if self.min_value is not None:
            schema["minimum"] = int(self.min_value)
        if self.max_value is not None:
            schema["maximum"] = int(self.max_value)
        schema["example"] = f"{Decimal(155):.{self.decimal_places}f}"
        return schema


class WholeNumberField(serializers.IntegerField):
    """A JSON integer, or a string of ASCII digits ("42"); not 4.2, "4.0", " 42" or "٤٢"."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, str | int):
            self.fail("invalid")
        if isinstance(data, str) and not WHOLE_NUMBER_STRING.fullmatch(data):
            self.fail("invalid")
        return super().to_internal_value(data)

    def openapi_schema(self, *, in_body: bool) -> dict:
        schema = _string_or_number(in_body=in_body)
        schema["pattern"] = WHOLE_NUMBER_STRING.pattern
        if self.min_value is not None:
            schema["minimum"] = self.min_value
        if self.max_value is not None:
            schema["maximum"] = self.max_value
        return schema
