"""Live-update events and their channel layer: in-memory when embedded, else Redis pub/sub.

On a private redis-server: a dead or frozen Redis costs a publisher (a settling worker, a
submitting request) at most one socket timeout and raises nothing, and subscribers get
events again once Redis is back."""

import json
import logging
import os
import shutil
import subprocess
import sys
import time

import pytest
from asgiref.sync import async_to_sync, sync_to_async

from conftest import WebsocketCommunicator
from stockflow.asgi import application
from stockflow.events import publish, publish_in_background, publish_many, quotes_group
from stockflow.settings import redis_channel_layer_config

needs_redis_server = pytest.mark.skipif(
    not shutil.which("redis-server"), reason="needs redis-server"
)

EVENT = {"event": "quote", "quote": {"id": 1, "ticker": "ACME", "close_price": "10.0000"}}


@pytest.fixture
def redis_layer(own_redis, settings):
    """The settings' pub/sub layer (REDIS_SOCKET_TIMEOUT 0.5 s) on the private redis-server."""
    settings.CHANNEL_LAYERS = {"default": redis_channel_layer_config(own_redis.url(2), "t")}
    return own_redis


def channel_layers(**env: str) -> dict:
    """CHANNEL_LAYERS as stockflow.settings computes it from this environment (set, even
    if empty, so that a developer's .env cannot fill anything in)."""
    code = "import json, stockflow.settings as s; print(json.dumps(s.CHANNEL_LAYERS))"
    defaults = {"DATABASE_URL": "", "REDIS_URL": "", "SECRET_KEY": "x"}
    defaults.update(REDIS_SOCKET_TIMEOUT="0.5", CHANNEL_LAYER_PREFIX="stockflow")
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **defaults, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)


def test_the_embedded_mode_uses_the_in_memory_layer():
    assert channel_layers() == {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


def test_with_redis_the_layer_is_pub_sub_two_databases_after_the_broker_with_short_timeouts():
    layers = channel_layers(
        REDIS_URL="redis://redis.internal:6380/3", CHANNEL_LAYER_PREFIX="shop-a"
    )
    host = {
        "address": "redis://redis.internal:6380/5",
        "socket_connect_timeout": 0.5,
        "socket_timeout": 0.5,
    }
    assert layers == {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [host], "prefix": "shop-a"},
        }
    }


def timed_publish() -> float:
    started = time.monotonic()
    publish(quotes_group("ACME"), EVENT)
    return time.monotonic() - started


@needs_redis_server
def test_publishing_to_a_dead_redis_costs_milliseconds_and_is_logged_not_raised(
    redis_layer, caplog
):
    assert timed_publish() < 0.5  # Redis up: connect, PUBLISH, close
    redis_layer.kill()

    with caplog.at_level(logging.ERROR, logger="stockflow.events"):
        elapsed = [timed_publish() for _ in range(3)]

    assert max(elapsed) < 0.5, elapsed  # refused at once: redis-py does not retry here
    assert caplog.text.count("event_publish_failed group=quotes.ACME event=quote") == 3


@needs_redis_server
def test_publishing_to_a_frozen_redis_gives_up_after_one_socket_timeout(redis_layer, caplog):
    redis_layer.freeze()

    with caplog.at_level(logging.ERROR, logger="stockflow.events"):
        elapsed = [timed_publish() for _ in range(2)]

    # The connection is accepted (the kernel does it), the PUBLISH reply never comes.
    assert all(0.4 < seconds < 1.5 for seconds in elapsed), elapsed
    assert caplog.text.count("event_publish_failed group=quotes.ACME event=quote") == 2


@needs_redis_server
def test_a_subscriber_receives_events_again_once_redis_is_back(redis_layer):
    async def receive_when_published(client):
        # Resubscribing happens in the layer's receive loop, which retries every second.
        for _ in range(50):
            await sync_to_async(publish)(quotes_group("ACME"), EVENT)
            # Not receive_output(timeout): its timeout cancels the application.
            if not await client.receive_nothing(timeout=0.2):
                return await client.receive_json_from()
        raise AssertionError("no event reached the subscriber after Redis came back")

    async def scenario():
        client = WebsocketCommunicator(application, "/ws/quotes/?tickers=ACME")
        assert await client.connect() == (True, None)
        await sync_to_async(publish)(quotes_group("ACME"), EVENT)
        assert await client.receive_json_from(timeout=2) == EVENT

        await sync_to_async(redis_layer.kill)()
        await sync_to_async(publish)(quotes_group("ACME"), EVENT)  # lost: nobody stores it
        await sync_to_async(redis_layer.start)()  # the same port, an empty server

        assert await receive_when_published(client) == EVENT
        await client.disconnect()

    async_to_sync(scenario)()


@needs_redis_server
def test_a_batch_to_a_frozen_redis_waits_out_one_socket_timeout_not_one_per_event(
    redis_layer, caplog
):
    events = [(quotes_group(f"T{n}"), EVENT) for n in range(100)]
    redis_layer.freeze()

    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="stockflow.events"):
        publish_many(events)
    elapsed = time.monotonic() - started

    assert 0.4 < elapsed < 1.5, elapsed
    assert "event_publish_failed group=quotes.T0 event=quote dropped=100" in caplog.text


@needs_redis_server
def test_a_batch_reaches_its_subscribers_in_order(redis_layer):
    async def scenario():
        client = WebsocketCommunicator(application, "/ws/quotes/?tickers=ACME,BOLT")
        assert await client.connect() == (True, None)
        batch = [
            (quotes_group(ticker), {"event": "quote", "n": n})
            for n, ticker in enumerate(["ACME", "ZED", "BOLT", "ACME"])
        ]
        await sync_to_async(publish_many)(batch)
        received = [await client.receive_json_from(timeout=2) for _ in range(3)]
        assert received == [
            {"event": "quote", "n": 0},
            {"event": "quote", "n": 2},
            {"event": "quote", "n": 3},
        ]
        assert await client.receive_nothing(timeout=0.2)
        await client.disconnect()

    async_to_sync(scenario)()


@needs_redis_server
def test_what_commits_hands_its_events_to_the_background_publisher_and_goes_on(redis_layer):
    async def scenario():
        client = WebsocketCommunicator(application, "/ws/quotes/?tickers=ACME")
        assert await client.connect() == (True, None)
        for n in range(3):  # in order, each batch on the loop's one connection
            await sync_to_async(publish_in_background)(
                [(quotes_group("ACME"), {"event": "quote", "n": n})]
            )
        received = [await client.receive_json_from(timeout=2) for _ in range(3)]
        assert [event["n"] for event in received] == [0, 1, 2]
        await client.disconnect()

    async_to_sync(scenario)()


@needs_redis_server
def test_a_frozen_redis_costs_the_committing_request_nothing(redis_layer, caplog):
    publish_in_background([(quotes_group("ACME"), EVENT)])  # the loop's connection is up
    redis_layer.freeze()

    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="stockflow.events"):
        for _ in range(20):
            publish_in_background([(quotes_group("ACME"), EVENT)])
        handed_over = time.monotonic() - started
        redis_layer.thaw()
        time.sleep(1)

    assert handed_over < 0.1, handed_over  # twenty frozen publishes would take 10 s in line
