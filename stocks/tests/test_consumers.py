"""The quotes stream in-process: a WebSocket communicator against stockflow.asgi's application
on the in-memory channel layer, with events published as the services publish them."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync, sync_to_async

from conftest import WebsocketCommunicator
from stockflow.asgi import application
from stockflow.events import publish, quotes_group
from stocks.models import StockData
from stocks.services import quotes_ingest


def run(scenario):
    """One event loop for the whole scenario: the in-memory layer's queues belong to it."""
    async_to_sync(scenario)()


def quote_event(ticker: str, close: str = "10.0000") -> dict:
    return {"event": "quote", "quote": {"id": 1, "ticker": ticker, "close_price": close}}


async def connected(path: str, headers: list | None = None) -> WebsocketCommunicator:
    client = WebsocketCommunicator(application, path, headers=headers)
    accepted, _ = await client.connect()
    assert accepted
    return client


async def publish_async(group: str, event: dict):
    # As a service's on_commit does: publish() is sync code, the loop is the server's.
    await sync_to_async(publish)(group, event)


def test_a_client_receives_the_quotes_of_its_tickers_and_no_others():
    async def scenario():
        client = await connected("/ws/quotes/?tickers=aapl,MSFT")
        await publish_async(quotes_group("GOOGL"), quote_event("GOOGL"))
        await publish_async(quotes_group("AAPL"), quote_event("AAPL", "150.0000"))
        await publish_async(quotes_group("MSFT"), quote_event("MSFT", "300.0000"))

        assert await client.receive_json_from() == quote_event("AAPL", "150.0000")
        assert await client.receive_json_from() == quote_event("MSFT", "300.0000")
        assert await client.receive_nothing(timeout=0.2)
        await client.disconnect()

    run(scenario)


def test_a_ticker_named_twice_in_any_case_delivers_each_quote_once():
    async def scenario():
        client = await connected("/ws/quotes?tickers=aapl&tickers=AAPL,%20Aapl%20")
        await publish_async(quotes_group("AAPL"), quote_event("AAPL"))

        assert await client.receive_json_from() == quote_event("AAPL")
        assert await client.receive_nothing(timeout=0.2)
        await client.disconnect()

    run(scenario)


@pytest.mark.django_db(transaction=True)
def test_a_quote_stored_by_the_service_reaches_the_stream_after_the_commit():
    timestamp = datetime(2025, 1, 2, 21, 0, tzinfo=UTC)

    async def scenario():
        client = await connected("/ws/quotes/?tickers=ACME")
        stored = await sync_to_async(quotes_ingest)(
            quotes=[
                {
                    "ticker": "acme",
                    "open_price": Decimal("41.5000"),
                    "close_price": Decimal("42.2500"),
                    "high": Decimal("42.8000"),
                    "low": Decimal("41.1000"),
                    "volume": 120000,
                    "timestamp": timestamp,
                }
            ]
        )
        assert await client.receive_json_from() == {
            "event": "quote",
            "quote": {
                "id": stored[0].pk,
                "ticker": "ACME",
                "open_price": "41.5000",
                "close_price": "42.2500",
                "high": "42.8000",
                "low": "41.1000",
                "volume": 120000,
                "timestamp": "2025-01-02T21:00:00Z",
            },
        }
        assert await client.receive_nothing(timeout=0.2)
        await client.disconnect()

    run(scenario)
    assert StockData.objects.filter(ticker="ACME").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_refused_ingestion_publishes_nothing(staff_client):
    async def scenario():
        client = await connected("/ws/quotes/?tickers=ACME")
        quote = {"ticker": "ACME", "open_price": "1", "close_price": "1", "high": "1", "low": "1"}
        quote.update(volume=1, timestamp="2025-01-02T21:00:00Z")
        response = await sync_to_async(staff_client.post)("/stocks/", [quote, quote], format="json")
        assert response.status_code == 409
        assert await client.receive_nothing(timeout=0.3)
        await client.disconnect()

    run(scenario)


@pytest.mark.parametrize(
    ("path", "code", "detail"),
    [
        (
            "/ws/quotes/",
            "tickers_required",
            "Name 1 to 50 tickers, comma-separated: /ws/quotes/?tickers=AAPL,MSFT.",
        ),
        (
            "/ws/quotes/?tickers=",
            "tickers_required",
            "Name 1 to 50 tickers, comma-separated: /ws/quotes/?tickers=AAPL,MSFT.",
        ),
        (
            "/ws/quotes/?tickers=AAPL,,MSFT",
            "invalid_ticker",
            "'' is not a ticker: 1-10 characters of A-Z, 0-9, '.' and '-'.",
        ),
        (
            "/ws/quotes/?tickers=ELEVENCHARS",
            "invalid_ticker",
            "'ELEVENCHARS' is not a ticker: 1-10 characters of A-Z, 0-9, '.' and '-'.",
        ),
        (
            "/ws/quotes/?tickers=AA%24PL",
            "invalid_ticker",
            "'AA$PL' is not a ticker: 1-10 characters of A-Z, 0-9, '.' and '-'.",
        ),
        (
            "/ws/quotes/?tickers=" + ",".join(f"T{n}" for n in range(51)),
            "too_many_tickers",
            "At most 50 tickers per connection; 51 were named.",
        ),
    ],
)
def test_a_missing_or_invalid_ticker_list_gets_an_error_event_then_close_4400(path, code, detail):
    async def scenario():
        client = await connected(path)
        assert await client.receive_json_from() == {
            "event": "error",
            "code": code,
            "detail": detail,
        }
        assert await client.receive_output() == {"type": "websocket.close", "code": 4400}

    run(scenario)


def test_fifty_tickers_are_accepted(settings):
    assert settings.WS_MAX_TICKERS == 50

    async def scenario():
        tickers = [f"T{n}" for n in range(50)]
        client = await connected("/ws/quotes/?tickers=" + ",".join(tickers))
        await publish_async(quotes_group("T49"), quote_event("T49"))
        assert await client.receive_json_from() == quote_event("T49")
        await client.disconnect()

    run(scenario)


def test_a_message_from_the_client_is_answered_with_a_read_only_error():
    async def scenario():
        client = await connected("/ws/quotes/?tickers=AAPL")
        await client.send_to(text_data='{"subscribe": "MSFT"}')
        assert await client.receive_json_from() == {
            "event": "error",
            "code": "read_only",
            "detail": "This stream only sends events; messages from the client are not read.",
        }
        await publish_async(quotes_group("MSFT"), quote_event("MSFT"))
        assert await client.receive_nothing(timeout=0.2)
        await client.disconnect()

    run(scenario)


@pytest.mark.parametrize(
    ("origin", "accepted"),
    [
        (None, True),  # not a browser: scripts and websocat send no Origin
        (b"http://localhost:3000", True),
        (b"http://127.0.0.1:8000", True),
        (b"https://evil.example", False),
    ],
)
def test_a_browser_page_is_accepted_only_from_an_allowed_origin(origin, accepted):
    headers = [(b"origin", origin)] if origin else []

    async def scenario():
        client = WebsocketCommunicator(application, "/ws/quotes/?tickers=AAPL", headers=headers)
        assert (await client.connect())[0] is accepted
        if accepted:
            await client.disconnect()

    run(scenario)


def test_an_unknown_websocket_path_is_refused_at_the_handshake():
    async def scenario():
        client = WebsocketCommunicator(application, "/ws/nothing/")
        assert await client.connect() == (False, 1000)

    run(scenario)
