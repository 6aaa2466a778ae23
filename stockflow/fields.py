"""Serializer fields shared by the apps: flexible timestamps and tickers."""

import re
from datetime import UTC, datetime, time

from django.core.validators import RegexValidator
from django.utils.dateparse import parse_date, parse_datetime
from rest_framework import serializers

from stocks.models import TICKER_REGEX

MIN_EPOCH = 0
MAX_EPOCH = 253_402_300_799  # 9999-12-31T23:59:59Z
EPOCH_RE = re.compile(r"^-?\d+(\.\d+)?$")


def parse_timestamp(value, *, end_of_day: bool = False) -> datetime:
    """ISO 8601 date or datetime, or Unix epoch seconds, as an aware UTC datetime.

    A bare date means its first instant, or with `end_of_day` its last one, so an
    inclusive range `2025-01-01..2025-01-31` covers the whole of both days.
    """
    text = str(value).strip()
    if not text or len(text) > 40 or isinstance(value, bool):
        raise ValueError("empty or overlong timestamp")
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
        try:
            return parse_timestamp(value, end_of_day=self.end_of_day)
        except (ValueError, OverflowError, OSError):
            self.fail("invalid")


class TickerField(serializers.CharField):
    """1-10 characters of A-Z 0-9 . - ; case-insensitive on input, stored upper-case."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 10)
        super().__init__(**kwargs)
        self.validators.append(
            RegexValidator(TICKER_REGEX, "A ticker is 1-10 characters of A-Z, 0-9, '.' and '-'.")
        )

    def to_internal_value(self, data):
        text = super().to_internal_value(data)
        # Only ASCII is folded: a dotless i (U+0131) upper-cases to "I", so "\u0131bm" would
        # otherwise become a valid "IBM".
        return text.upper() if text.isascii() else text
