"""Cached reads kept as rendered JSON on a real Redis: one round trip for a hit, versions
respected, the database when Redis is gone."""

import shutil
from decimal import Decimal

import pytest
import redis

from conftest import client_for
from stockflow.cache import bump, cached_json
from stockflow.settings import redis_cache_config
from stocks.tests.factories import StockDataFactory
from users.tests.factories import UserFactory

pytestmark = [
    pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server"),
    pytest.mark.django_db,
]


@pytest.fixture
def redis_cache(own_redis, settings):
    settings.CACHES = {"default": redis_cache_config(own_redis.url(0), "json-test")}
    client = redis.Redis.from_url(own_redis.url(0))
    yield client
    client.close()


def commands(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): value["calls"] for name, value in stats.items()}


def test_a_cached_quote_read_is_one_redis_command_and_no_query(
    redis_cache, django_assert_num_queries
):
    StockDataFactory(ticker="ACME", close_price=Decimal("10.0000"))
    client = client_for(UserFactory())
    first = client.get("/stocks/ACME/")
    before = commands(redis_cache)

    with django_assert_num_queries(0):
        second = client.get("/stocks/ACME/")

    # One script for the version and the entry (the rest is the throttle's own bookkeeping).
    assert commands(redis_cache)["evalsha"] - before.get("evalsha", 0) == 1
    assert second.content == first.content
    assert second.json()["close_price"] == "10.0000"
    assert second["Content-Type"] == "application/json"


def test_an_entry_stored_before_a_bump_is_never_read_after_it(redis_cache):
    loads = []

    def loader():
        loads.append(1)
        return {"n": len(loads), "price": "1.50"}  # response data: serializers make strings

    assert cached_json("ns", "k", loader) == b'{"n":1,"price":"1.50"}'
    assert cached_json("ns", "k", loader) == b'{"n":1,"price":"1.50"}'
    bump("ns")
    assert cached_json("ns", "k", loader) == b'{"n":2,"price":"1.50"}'
    assert len(loads) == 2


def test_nothing_is_cached_for_a_loader_that_finds_nothing(redis_cache):
    assert cached_json("ns", "missing", lambda: None) is None
    assert cached_json("ns", "missing", lambda: {"found": True}) == b'{"found":true}'


def test_a_dead_redis_makes_cached_json_read_the_loader(own_redis, redis_cache):
    own_redis.kill()

    assert cached_json("ns", "k", lambda: {"from": "db"}) == b'{"from":"db"}'
