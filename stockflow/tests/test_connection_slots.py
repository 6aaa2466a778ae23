"""The /ws/quotes/ connection slots per client address in Redis (stockflow.streams.RedisSlots),
which every ws process shares, on a private redis-server: exact under racing handshakes, freed
on close, lapsing when their process died, and never a reason to refuse when Redis is down."""

import asyncio
import logging

import pytest
from asgiref.sync import async_to_sync

from conftest import WebsocketCommunicator
from stockflow.asgi import application
from stockflow.settings import redis_channel_layer_config
from stockflow.streams import RedisSlots


@pytest.fixture
def slots(own_redis):
    return RedisSlots(own_redis.url(2), "test", 0.5)


def run(scenario):
    async_to_sync(scenario)()


def test_an_address_gets_its_slots_and_no_more_and_a_closed_one_comes_back(slots):
    async def scenario():
        assert [await slots.take("203.0.113.7", f"c{n}", 3) for n in range(4)] == [
            True,
            True,
            True,
            False,
        ]
        assert await slots.take("198.51.100.1", "d0", 3) is True  # another address
        assert await slots.take("203.0.113.7", "c0", 3) is True  # a holder asking again
        await slots.give_back("203.0.113.7", "c1")
        assert await slots.take("203.0.113.7", "c4", 3) is True
        assert await slots.take("203.0.113.7", "c5", 3) is False

    run(scenario)


def test_racing_handshakes_never_take_more_than_the_limit(slots):
    async def scenario():
        taken = await asyncio.gather(*(slots.take("203.0.113.7", f"c{n}", 20) for n in range(60)))
        assert taken.count(True) == 20

    run(scenario)


def test_the_slots_of_a_dead_process_lapse_and_those_kept_alive_do_not(slots):
    slots.SLOT_SECONDS = 0.5

    async def scenario():
        assert await slots.take("203.0.113.7", "kept", 2)
        assert await slots.take("203.0.113.7", "crashed", 2)  # never refreshed nor given back
        assert not await slots.take("203.0.113.7", "new", 2)
        for _ in range(3):
            await asyncio.sleep(0.25)
            await slots.keep("203.0.113.7", "kept")
        assert await slots.take("203.0.113.7", "new", 2)
        assert not await slots.take("203.0.113.7", "newer", 2)

    run(scenario)


def test_a_dead_redis_lets_connections_in_and_logs_it(slots, own_redis, caplog):
    own_redis.kill()

    async def scenario():
        with caplog.at_level(logging.WARNING, logger="stockflow.streams"):
            assert [await slots.take("203.0.113.7", f"c{n}", 1) for n in range(3)] == [True] * 3
            await slots.keep("203.0.113.7", "c0")
            await slots.give_back("203.0.113.7", "c0")

    run(scenario)
    assert caplog.text.count("ws_slots_unavailable address=203.0.113.7") == 5


def test_an_open_quotes_stream_keeps_its_slot_alive_and_gives_it_back_on_close(
    own_redis, settings, monkeypatch
):
    settings.CHANNEL_LAYERS = {"default": redis_channel_layer_config(own_redis.url(2), "t")}
    settings.WS_MAX_CONNECTIONS_PER_ADDRESS = 1
    monkeypatch.setattr(RedisSlots, "SLOT_SECONDS", 0.6)
    monkeypatch.setattr(RedisSlots, "KEEP_EVERY", 0.2)

    def client() -> WebsocketCommunicator:
        communicator = WebsocketCommunicator(application, "/ws/quotes/?tickers=ACME")
        communicator.scope["client"] = ("203.0.113.7", 50000)
        return communicator

    async def scenario():
        holder = client()
        assert await holder.connect() == (True, None)
        await asyncio.sleep(1.5)  # two and a half lifetimes of an unrefreshed slot
        refused = client()
        assert await refused.connect() == (True, None)
        assert (await refused.receive_json_from())["code"] == "too_many_connections"
        assert await refused.receive_output() == {"type": "websocket.close", "code": 4429}
        await holder.disconnect()
        successor = client()
        assert await successor.connect() == (True, None)
        await successor.disconnect()

    run(scenario)
