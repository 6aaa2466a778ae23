"""The quotes stream, /ws/quotes/?tickers=AAPL,MSFT: every quote stored for those tickers.

Public, like GET /stocks/. Tickers follow the API's rules (1-10 of A-Z 0-9 . -, any case,
comma-separated, repeated `tickers` parameters add up). A missing or invalid list is
answered after the handshake, so the client can read why: one `error` event, then close
code 4400.

Connections per client address are limited (WS_MAX_CONNECTIONS_PER_ADDRESS, across every ws
process): one more is accepted, answered with a `too_many_connections` error event and closed
with 4429, so an anonymous client cannot hold unbounded sockets and groups.
"""

import re
from urllib.parse import parse_qs

from django.conf import settings

from stockflow.events import quotes_group
from stockflow.streams import (
    CLOSE_BAD_REQUEST,
    CLOSE_TOO_MANY_CONNECTIONS,
    EventStreamConsumer,
    client_address,
    connection_slots,
)
from stockflow.text import TICKER_REGEX, upper_ascii

from .errors import InvalidTicker, TickersRequired, TooManyConnections, TooManyTickers

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
    slot = None  # (slots, address) while this connection holds one

    async def connect(self):
        try:
            tickers = tickers_from_query(self.scope["query_string"])
        except (TickersRequired, InvalidTicker, TooManyTickers) as error:
            await self.refuse(code=error.code, detail=error.detail, close_code=CLOSE_BAD_REQUEST)
            return
        if not await self.take_slot():
            error = TooManyConnections(most=settings.WS_MAX_CONNECTIONS_PER_ADDRESS)
            await self.refuse(
                code=error.code, detail=error.detail, close_code=CLOSE_TOO_MANY_CONNECTIONS
            )
            return
        await self.join([quotes_group(ticker) for ticker in tickers])
        await self.accept()

    async def take_slot(self) -> bool:
        """Hold one of the client address's slots; False when they are all taken."""
        most = settings.WS_MAX_CONNECTIONS_PER_ADDRESS
        if not most:
            return True
        slots, address = connection_slots(), client_address(self.scope)
        if not await slots.take(address, self.channel_name, most):
            return False
        self.slot = (slots, address)
        if slots.KEEP_EVERY:
            self.every(slots.KEEP_EVERY, self.keep_slot)
        return True

    async def keep_slot(self) -> None:
        slots, address = self.slot
        await slots.keep(address, self.channel_name)

    async def disconnect(self, code):
        if self.slot is not None:
            slots, address = self.slot
            self.slot = None
            await slots.give_back(address, self.channel_name)
