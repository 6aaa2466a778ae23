"""The quotes stream, /ws/quotes/?tickers=AAPL,MSFT: every quote stored for those tickers.

Public, like GET /stocks/. Tickers follow the API's rules (1-10 of A-Z 0-9 . -, any case,
comma-separated, repeated `tickers` parameters add up). A missing or invalid list is
answered after the handshake, so the client can read why: one `error` event, then close
code 4400.
"""

import re
from urllib.parse import parse_qs

from django.conf import settings

from stockflow.events import quotes_group
from stockflow.streams import CLOSE_BAD_REQUEST, EventStreamConsumer
from stockflow.text import TICKER_REGEX, upper_ascii

from .errors import InvalidTicker, TickersRequired, TooManyTickers

TICKER = re.compile(TICKER_REGEX)
# Enough of a refused ticker to recognise it, however long the client made it.
TICKER_SHOWN = 20


def tickers_from_query(query_string: bytes) -> list[str]:
    """The distinct tickers named in `tickers`, upper-cased, in the order first named."""
    query = parse_qs(query_string.decode("latin-1"), keep_blank_values=True)
    names = [name for value in query.get("tickers", []) for name in value.split(",")]
    most = settings.WS_MAX_TICKERS
    if not any(name.strip() for name in names):
        raise TickersRequired(most=most)
    tickers = []
    for name in names:
        ticker = upper_ascii(name)
        if not TICKER.fullmatch(ticker):
            raise InvalidTicker(ticker=name[:TICKER_SHOWN])
        if ticker not in tickers:
            tickers.append(ticker)
    if len(tickers) > most:
        raise TooManyTickers(most=most, count=len(tickers))
    return tickers


class QuotesConsumer(EventStreamConsumer):
    async def connect(self):
        try:
            tickers = tickers_from_query(self.scope["query_string"])
        except (TickersRequired, InvalidTicker, TooManyTickers) as error:
            await self.accept()
            await self.send_error(code=error.code, detail=error.detail)
            await self.close(code=CLOSE_BAD_REQUEST)
            return
        await self.join([quotes_group(ticker) for ticker in tickers])
        await self.accept()
