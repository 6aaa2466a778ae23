"""JSON parser that reads numbers with a fraction as Decimal, so money never passes a float."""

import codecs
import json
import re
from decimal import Decimal, DecimalException

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

# json decodes an escaped pair ("\ud83d\udca5") to one character, so any surrogate left is lone.
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _has_lone_surrogate(data) -> bool:
    """True if any key or string holds a lone surrogate, which cannot be encoded as UTF-8."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if LONE_SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


class DecimalJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        try:
            decoded_stream = codecs.getreader(encoding)(stream)
            data = json.load(decoded_stream, parse_float=Decimal, parse_constant=_refuse_constant)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc
        # An exponent beyond what Decimal can hold (1e99999999999999999999) is not a ValueError.
        except DecimalException as exc:
            raise ParseError("JSON parse error - a number is out of range.") from exc
        # Refused here, or an error message that echoes the string could not even be rendered.
        if _has_lone_surrogate(data):
            raise ParseError(
                "JSON parse error - a string holds a lone surrogate (\\ud800-\\udfff)."
            )
        return data
