"""Live updates end to end: real WebSocket clients (the `websockets` library) on the ws process
(uvicorn), HTTP through gunicorn, settlement by a Celery worker, all on the per-run test
database and a private redis-server whose pub/sub carries the events between processes, and
which holds the connection slots the ws processes share."""

import asyncio
import json
import sys
import time
from decimal import Decimal

import pytest
import requests
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from stockflow.testing import BASE_DIR
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


async def assert_closed(client, code: int, timeout: float = 2):
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(client.recv(), timeout)
    assert closed.value.rcvd.code == code


def test_a_token_deleted_by_another_process_closes_its_streams_within_2_s(stack):
    user, other = UserFactory(), UserFactory()
    ws = stack.ws()
    orders = f"{ws.ws_url}/ws/orders/"

    async def scenario():
        async with (
            connect(
                orders, additional_headers={"Authorization": f"Token {user.auth_token.key}"}
            ) as by_header,
            connect(f"{orders}?token={user.auth_token.key}") as by_query,
            connect(f"{orders}?token={other.auth_token.key}") as theirs,
        ):
            # An operator rotates the token from a shell: DRF's command deletes it, then
            # creates a new one and prints it; its process exits right after.
            rotate = await asyncio.create_subprocess_exec(
                *[sys.executable, "manage.py", "drf_create_token", "--reset", user.username],
                cwd=BASE_DIR,
                env=stack.env(),
                stdout=asyncio.subprocess.PIPE,
            )
            printed = await asyncio.wait_for(rotate.stdout.readline(), 60)
            deleted = time.monotonic()  # at the latest: the line follows the deletion's commit
            assert printed.startswith(b"Generated token "), printed
            for client in (by_header, by_query):
                assert (await next_event(client, timeout=2))["code"] == "credentials_revoked"
                await assert_closed(client, 4401)
            assert time.monotonic() - deleted < 2
            assert await rotate.wait() == 0
            await assert_silent(theirs)

            new_key = printed.split()[2].decode()
            async with connect(f"{orders}?token={new_key}") as renewed:
                await assert_silent(renewed)

    asyncio.run(scenario())
    assert "Traceback" not in ws.log()


async def open_quotes(ws, tickers: str = "ACME", headers: dict | None = None):
    client = await connect(f"{ws.ws_url}/ws/quotes/?tickers={tickers}", additional_headers=headers)
    try:  # a refused one says so at once; an accepted one stays silent
        event = await asyncio.wait_for(client.recv(), 0.5)
    except TimeoutError:
        return client
    await client.close()
    return json.loads(event)


def test_the_connections_of_one_address_are_counted_across_ws_processes(stack):
    first = stack.ws(WS_MAX_CONNECTIONS_PER_ADDRESS="2")
    second = stack.ws(WS_MAX_CONNECTIONS_PER_ADDRESS="2")

    async def scenario():
        on_first, on_second = await open_quotes(first), await open_quotes(second)
        async with connect(f"{second.ws_url}/ws/quotes/?tickers=ACME") as refused:
            assert await next_event(refused) == {
                "event": "error",
                "code": "too_many_connections",
                "detail": "At most 2 /ws/quotes/ connections per client address are open at "
                "once; close one before opening another.",
            }
            await assert_closed(refused, 4429)
        await on_first.close()

        # The slot is given back once the first process has seen the close.
        deadline = time.monotonic() + 2
        while isinstance(again := await open_quotes(second), dict):
            assert again["code"] == "too_many_connections"
            assert time.monotonic() < deadline, "the closed connection's slot never came back"
        for client in (on_second, again):
            await client.close()

    asyncio.run(scenario())
    assert "Traceback" not in first.log() + second.log()


def test_a_client_cannot_choose_its_counted_address_with_x_forwarded_for(stack):
    """uvicorn would put X-Forwarded-For in the peer's place for a client on loopback (its
    --forwarded-allow-ips default): the ws process runs with --no-proxy-headers, so the one
    rule is NUM_PROXIES' (0 here: the peer counts, whatever the client wrote)."""
    ws = stack.ws(WS_MAX_CONNECTIONS_PER_ADDRESS="2")

    async def scenario():
        opened = [
            await open_quotes(ws, headers={"X-Forwarded-For": f"203.0.113.{i}"}) for i in (1, 2)
        ]
        refused = await open_quotes(ws, headers={"X-Forwarded-For": "203.0.113.3"})
        assert refused["code"] == "too_many_connections", refused
        for client in opened:
            await client.close()

    asyncio.run(scenario())
