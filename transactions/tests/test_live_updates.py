"""Live updates end to end: real WebSocket clients (the `websockets` library) on the ws process
(uvicorn), HTTP through gunicorn, settlement by a Celery worker, all on the per-run test
database and a private redis-server whose pub/sub carries the events between processes."""

import asyncio
import json
from decimal import Decimal

import pytest
import requests
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from stocks.tests.factories import StockDataFactory
from users.tests.factories import UserFactory

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

QUIET = 1.0  # seconds a client must stay silent to have received nothing


async def next_event(client, timeout: float = 15) -> dict:
    return json.loads(await asyncio.wait_for(client.recv(), timeout))


async def assert_silent(*clients):
    for client in clients:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.recv(), QUIET)


async def post(url: str, body, token: str) -> requests.Response:
    headers = {"Authorization": f"Token {token}"}
    return await asyncio.to_thread(requests.post, url, json=body, headers=headers, timeout=10)


def test_a_stored_quote_reaches_the_clients_of_its_ticker_and_no_others(stack):
    staff = UserFactory(is_staff=True)
    stack.worker()
    web, ws = stack.web(), stack.ws()
    quote = {"ticker": "acme", "open_price": "41.50", "close_price": "42.25", "high": "42.80"}
    quote.update(low="41.10", volume=120000, timestamp="2025-01-02T21:00:00Z")

    async def scenario():
        async with (
            connect(f"{ws.ws_url}/ws/quotes/?tickers=ACME,BOLT") as acme,
            connect(f"{ws.ws_url}/ws/quotes?tickers=bolt") as bolt,
        ):
            response = await post(f"{web.url}/stocks/", quote, staff.auth_token.key)
            assert response.status_code == 201, response.text
            assert await next_event(acme) == {"event": "quote", "quote": response.json()}
            assert response.json() == {
                "id": response.json()["id"],
                "ticker": "ACME",
                "open_price": "41.5000",
                "close_price": "42.2500",
                "high": "42.8000",
                "low": "41.1000",
                "volume": 120000,
                "timestamp": "2025-01-02T21:00:00Z",
            }
            await assert_silent(acme, bolt)

        async with connect(f"{ws.ws_url}/ws/quotes/?tickers=AA$PL") as refused:
            assert await next_event(refused) == {
                "event": "error",
                "code": "invalid_ticker",
                "detail": "'AA$PL' is not a ticker: 1-10 characters of A-Z, 0-9, '.' and '-'.",
            }
            with pytest.raises(ConnectionClosed) as closed:
                await refused.recv()
            assert closed.value.rcvd.code == 4400

    asyncio.run(scenario())


def test_a_market_buy_streams_submitted_then_completed_to_its_owner_only(stack):
    owner = UserFactory(balance=Decimal("1000.00"))
    other = UserFactory(balance=Decimal("1000.00"))
    StockDataFactory(ticker="ACME", close_price=Decimal("10.0000"))
    stack.worker()
    web, ws = stack.web(), stack.ws()
    orders = f"{ws.ws_url}/ws/orders/"
    order = {"ticker": "ACME", "transaction_type": "buy", "transaction_volume": 3}

    async def scenario():
        with pytest.raises(InvalidStatus) as refused:
            async with connect(orders):
                pass
        assert refused.value.response.status_code == 403
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"{orders}?token=not-a-token"):
                pass
        assert refused.value.response.status_code == 403

        token_header = {"Authorization": f"Token {owner.auth_token.key}"}
        async with (
            connect(orders, additional_headers=token_header) as mine,
            connect(f"{orders}?token={other.auth_token.key}") as theirs,
        ):
            response = await post(f"{web.url}/transactions/", order, owner.auth_token.key)
            assert response.status_code == 201, response.text
            order_id = response.json()["id"]
            submitted, completed = await next_event(mine), await next_event(mine)
            await assert_silent(mine, theirs)
        return order_id, submitted, completed

    order_id, submitted, completed = asyncio.run(scenario())

    assert (submitted["event"], submitted["order"]["id"]) == ("submitted", order_id)
    assert submitted["order"]["status"] == "pending"
    assert submitted["balance"] == "1000.00"
    assert (completed["event"], completed["order"]["id"]) == ("completed", order_id)
    assert completed["order"]["status"] == "completed"
    assert completed["order"]["transaction_price"] == "30.00"
    assert (completed["balance"], completed["buying_power"]) == ("970.00", "970.00")
    # The order as the REST API shows it once settled.
    detail = requests.get(
        f"{web.url}/transactions/{owner.pk}/{order_id}/",
        headers={"Authorization": f"Token {owner.auth_token.key}"},
        timeout=10,
    )
    assert completed["order"] == detail.json()
    # uvicorn logs each handshake's path and query: never with the token in it.
    log = ws.log()
    assert '"WebSocket /ws/orders/?token=[redacted]" [accepted]' in log, log
    assert other.auth_token.key not in log
    assert "Traceback" not in log
