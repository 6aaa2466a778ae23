"""JSON parser that reads numbers with a fraction as Decimal, so money never passes a float;
and the one rule for a request's charset: UTF-8 or none at all.

`charset_is_utf8` is also what stockflow.middleware asks, in front of Django, before Django
itself looks the declared charset up as a codec (a request naming `bz2` or `zlib` would
otherwise choose a decompressor for its own body).
"""

import json
import re
from decimal import Decimal, DecimalException

from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import JSONParser

# json decodes an escaped pair ("\ud83d\udca5") to one character, so any surrogate left is lone.
LONE_SURROGATE = re.compile("[\ud800-\udfff]")

# Python's names for its UTF-8 codec (encodings/aliases.py), compared lowercased with "-" read
# as "_". Written out rather than asked of codecs.lookup, which would find a codec for any name
# a request sends: bz2, zlib, rot13 and the rest.
UTF8_NAMES = frozenset({"utf_8", "utf8", "u8", "utf", "utf8_ucs2", "utf8_ucs4", "cp65001"})
# Every "charset" in the lowercased header must start a plain `charset=<name>` parameter, the
# name optionally quoted. Anything else that mentions a charset is refused: an RFC 2231
# `charset*=bz2''x` (which Django decodes with the codec it names), a second charset, a
# charset inside another parameter's quoted value. Refusing those costs no real client.
CHARSET_PARAMETER = re.compile(r'charset\s*=\s*("?)([a-z0-9_-]+)\1\s*(?:;|\Z)')
UNSUPPORTED_CHARSET = "Requests are read as UTF-8 only: send charset=utf-8, or no charset."


def charset_is_utf8(content_type: str) -> bool:
    """True if the Content-Type header names no charset, or only UTF-8 by one of its names."""
    lowered = content_type.lower()
    start = lowered.find("charset")
    while start != -1:
        match = CHARSET_PARAMETER.match(lowered, start)
        if match is None or match[2].replace("-", "_") not in UTF8_NAMES:
            return False
        start = lowered.find("charset", start + 1)
    return True


class UnsupportedCharset(APIException):
    status_code = status.HTTP_415_UNSUPPORTED_MEDIA_TYPE
    default_detail = UNSUPPORTED_CHARSET
    default_code = "unsupported_charset"


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
        # The middleware refused other charsets already; this parser is safe on its own too.
        # It never decodes with the request's `encoding`: Django took that from the header.
        if not charset_is_utf8(media_type or ""):
            raise UnsupportedCharset()
        try:
            data = json.loads(
                stream.read().decode("utf-8"),
                parse_float=Decimal,
                parse_constant=_refuse_constant,
            )
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
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
