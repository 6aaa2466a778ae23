"""Errors of the market data context."""

from stockflow.errors import Conflict, InvalidInput, NotFound


class UnknownTicker(NotFound):
    code = "unknown_ticker"
    message = "No quotes for ticker '{ticker}'."


class DuplicateQuote(Conflict):
    code = "duplicate_quote"
    message = "A quote for the same ticker and timestamp already exists."


class DuplicateQuoteInRequest(DuplicateQuote):
    message = "Quote for {ticker} at {timestamp} appears twice in the request."


class QuoteFromTheFuture(InvalidInput):
    code = "quote_from_the_future"
    field = "timestamp"
    message = "A quote may be at most {seconds} seconds ahead of the server's clock."
