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


# --- connections per client address ----------------------------------------------------------

TOO_MANY = {
    "event": "error",
    "code": "too_many_connections",
    "detail": "At most 2 /ws/quotes/ connections per client address are open at once; "
    "close one before opening another.",
}


class ClientAt(WebsocketCommunicator):
    """A quotes client whose connection comes from `address` (the ASGI scope's `client`)."""

    def __init__(self, address: str, path: str = "/ws/quotes/?tickers=AAPL", headers=None):
        super().__init__(application, path, headers=headers)
        self.scope["client"] = (address, 50000)


async def assert_refused_as_too_many(client):
    assert await client.connect() == (True, None)  # accepted, so the client can read why
    assert await client.receive_json_from() == TOO_MANY
    assert await client.receive_output() == {"type": "websocket.close", "code": 4429}
    await client.disconnect()


@pytest.fixture
def two_per_address(settings):
    settings.WS_MAX_CONNECTIONS_PER_ADDRESS = 2


def test_the_connection_over_the_limit_of_an_address_is_closed_with_4429(two_per_address):
    async def scenario():
        first, second = ClientAt("203.0.113.7"), ClientAt("203.0.113.7")
        assert await first.connect() == (True, None)
        assert await second.connect() == (True, None)

        await assert_refused_as_too_many(ClientAt("203.0.113.7"))

        elsewhere = ClientAt("198.51.100.1")
        assert await elsewhere.connect() == (True, None)
        await publish_async(quotes_group("AAPL"), quote_event("AAPL"))
        for client in (first, second, elsewhere):
            assert await client.receive_json_from() == quote_event("AAPL")
            await client.disconnect()

    run(scenario)


def test_closing_a_connection_frees_its_slot(two_per_address):
    async def scenario():
        first, second = ClientAt("203.0.113.7"), ClientAt("203.0.113.7")
        assert await first.connect() == (True, None)
        assert await second.connect() == (True, None)
        await first.disconnect()

        third = ClientAt("203.0.113.7")
        assert await third.connect() == (True, None)
        await assert_refused_as_too_many(ClientAt("203.0.113.7"))
        for client in (second, third):
            await client.disconnect()
        # All closed: the whole allowance is back.
        again = [ClientAt("203.0.113.7"), ClientAt("203.0.113.7")]
        for client in again:
            assert await client.connect() == (True, None)
            await client.disconnect()

    run(scenario)


def test_a_refused_ticker_list_takes_no_slot_and_the_ticker_limit_still_holds(two_per_address):
    too_many_tickers = "/ws/quotes/?tickers=" + ",".join(f"T{n}" for n in range(51))

    async def scenario():
        for _ in range(3):
            refused = ClientAt("203.0.113.7", too_many_tickers)
            assert await refused.connect() == (True, None)
            assert (await refused.receive_json_from())["code"] == "too_many_tickers"
            assert await refused.receive_output() == {"type": "websocket.close", "code": 4400}
        clients = [ClientAt("203.0.113.7"), ClientAt("203.0.113.7")]
        for client in clients:
            assert await client.connect() == (True, None)
        for client in clients:
            await client.disconnect()

    run(scenario)


def test_behind_a_proxy_the_address_is_the_one_it_forwards(two_per_address, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}

    def via_proxy(forwarded_for: str) -> ClientAt:
        return ClientAt("10.0.0.2", headers=[(b"x-forwarded-for", forwarded_for.encode())])

    async def scenario():
        # The proxy appends the address it saw; what the client wrote before it is not trusted.
        alice = [via_proxy("203.0.113.7"), via_proxy("1.2.3.4, 203.0.113.7")]
        for client in alice:
            assert await client.connect() == (True, None)
        await assert_refused_as_too_many(via_proxy("5.6.7.8, 203.0.113.7"))
        bob = via_proxy("203.0.113.7, 198.51.100.1")  # same proxy, another client
        assert await bob.connect() == (True, None)
        for client in [*alice, bob]:
            await client.disconnect()

    run(scenario)


def test_without_proxies_a_forwarded_for_header_is_ignored(two_per_address):
    def spoofing(forwarded_for: str) -> ClientAt:
        return ClientAt("203.0.113.7", headers=[(b"x-forwarded-for", forwarded_for.encode())])

    async def scenario():
        clients = [spoofing("1.1.1.1"), spoofing("2.2.2.2")]
        for client in clients:
            assert await client.connect() == (True, None)
        await assert_refused_as_too_many(spoofing("3.3.3.3"))
        for client in clients:
            await client.disconnect()

    run(scenario)


def test_a_limit_of_zero_switches_the_limit_off(settings):
    settings.WS_MAX_CONNECTIONS_PER_ADDRESS = 0

    async def scenario():
        clients = [ClientAt("203.0.113.7") for _ in range(30)]
        for client in clients:
            assert await client.connect() == (True, None)
        for client in clients:
            await client.disconnect()

    run(scenario)


def test_twenty_connections_per_address_are_allowed_by_default(settings):
    assert settings.WS_MAX_CONNECTIONS_PER_ADDRESS == 20

    async def scenario():
        clients = [ClientAt("203.0.113.7") for _ in range(20)]
        for client in clients:
            assert await client.connect() == (True, None)
        refused = ClientAt("203.0.113.7")
        assert await refused.connect() == (True, None)
        assert await refused.receive_json_from() == {
            **TOO_MANY,
            "detail": TOO_MANY["detail"].replace("At most 2 ", "At most 20 "),
        }
        assert await refused.receive_output() == {"type": "websocket.close", "code": 4429}
        for client in clients:
            await client.disconnect()

    run(scenario)
