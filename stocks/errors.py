"""Errors of the market data context."""

from stockflow.errors import Conflict, InvalidInput, NotFound, TooMany


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


class TickersRequired(InvalidInput):
    code = "tickers_required"
    field = "tickers"
    message = "Name 1 to {most} tickers, comma-separated: /ws/quotes/?tickers=AAPL,MSFT."


class InvalidTicker(InvalidInput):
    code = "invalid_ticker"
    field = "tickers"
    message = "{ticker!r} is not a ticker: 1-10 characters of A-Z, 0-9, '.' and '-'."


class TooManyTickers(InvalidInput):
    code = "too_many_tickers"
    field = "tickers"
    message = "At most {most} tickers per connection; {count} were named."


class TooManyConnections(TooMany):
    code = "too_many_connections"
    message = (
        "At most {most} /ws/quotes/ connections per client address are open at once; "
        "close one before opening another."
    )
