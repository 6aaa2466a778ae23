"""Text rules shared by models, services and serializers: tickers, ASCII upper-casing and
the canonical form of a username.

Nothing here knows about HTTP, so services may use it as freely as serializers do.
"""

import unicodedata

TICKER_MAX_LENGTH = 10
TICKER_REGEX = rf"^[A-Z0-9.\-]{{1,{TICKER_MAX_LENGTH}}}$"
# JSON's own whitespace; Python's str.strip() would also drop e.g. U+2003, which no pattern states.
JSON_WHITESPACE = " \t\n\r"


def upper_ascii(text: str) -> str:
    """Trim JSON whitespace and upper-case, but only ASCII: a dotless i (U+0131) and a long s
    (U+017F) upper-case to "I" and "S", so "\u0131bm" and "\u017fell" would pass as IBM, SELL."""
    text = text.strip(JSON_WHITESPACE)
    return text.upper() if text.isascii() else text


def canonical_username(username: str) -> str:
    """The form that decides which account a name belongs to: NFKC, case-folded, NFKC again.

    Case folding, not lower-casing: final, capital and small sigma ("\u03c2", "\u03a3",
    "\u03c3") all fold to the small one, and "\u00df" to "ss" (Python's lower() and
    PostgreSQL's LOWER both keep a final sigma). NFKC makes full-width "\uff4e\uff49\uff4b"
    "nik" and composes "e\u0301" into "\u00e9". NFKC comes first because it can produce
    capitals (the modifier letter "\u1d2c" becomes "A"), and again last because folding can
    leave a sequence NFKC composes ("\u01f0" folds to "j\u030c"); so the result is a fixed
    point: canonical_username(canonical_username(x)) == canonical_username(x).
    """
    folded = unicodedata.normalize("NFKC", username).casefold()
    return unicodedata.normalize("NFKC", folded)
