"""Text rules shared by models, services and serializers: tickers and ASCII upper-casing.

Nothing here knows about HTTP, so services may use it as freely as serializers do.
"""

TICKER_MAX_LENGTH = 10
TICKER_REGEX = rf"^[A-Z0-9.\-]{{1,{TICKER_MAX_LENGTH}}}$"
# JSON's own whitespace; Python's str.strip() would also drop e.g. U+2003, which no pattern states.
JSON_WHITESPACE = " \t\n\r"


def upper_ascii(text: str) -> str:
    """Trim JSON whitespace and upper-case, but only ASCII: a dotless i (U+0131) and a long s
    (U+017F) upper-case to "I" and "S", so "\u0131bm" and "\u017fell" would pass as IBM, SELL."""
    text = text.strip(JSON_WHITESPACE)
    return text.upper() if text.isascii() else text
