"""Sending to the live-update streams: Channels layer groups and the messages they carry.

Events themselves are rows of the outbox (the `events` app). The relay's subscribers send
each to its group with `publish_and_wait` (the relay marks them relayed only once sent), and
the groups' WebSocket consumers (`stocks.consumers` for quotes, `transactions.consumers` for
a user's orders) forward them to their clients. Control messages that are not events (the
closing of revoked streams) go with `publish_many_on_commit`: sent in the background after
the commit, and lost, logged, when the layer is down. Everything sent is JSON-ready
(decimals as strings, datetimes ISO 8601 with `Z`).
"""

import asyncio
import atexit
import concurrent.futures
import logging
import os
import threading
from datetime import datetime
from decimal import Decimal

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db.transaction import on_commit

logger = logging.getLogger(__name__)

# The consumers' handler for these messages: `event_message` (Channels maps "." to "_").
MESSAGE_TYPE = "event.message"


def quotes_group(ticker: str) -> str:
    return f"quotes.{ticker}"


def orders_group(user_id: int) -> str:
    return f"orders.{user_id}"


def as_json(value):
    """Decimals as strings (exactly as stored), datetimes as ISO 8601 UTC with `Z`."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {key: as_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [as_json(item) for item in value]
    return value


def publish(group: str, event: dict) -> None:
    layer = get_channel_layer()
    if layer is None:  # no CHANNEL_LAYERS configured: nobody can be listening
        return
    try:
        async_to_sync(layer.group_send)(group, {"type": MESSAGE_TYPE, "event": as_json(event)})
    except Exception:
        logger.exception("event_publish_failed group=%s event=%s", group, event.get("event"))


def publish_many(events: list[tuple[str, dict]], *, message_type: str = MESSAGE_TYPE) -> None:
    """Send each `(group, event)` in order, in one event loop over one connection.

    `publish` opens a loop and a Redis connection per event (~3 ms); a bulk ingestion of
    1,000 quotes this way takes ~0.1 s instead of ~3 s. The first failure drops the rest:
    against a dead or frozen layer each would cost the same socket timeout again.
    """
    layer = get_channel_layer()
    if layer is None or not events:
        return
    try:
        async_to_sync(_send_all)(layer, events, message_type)
    except Exception:
        logger.exception("event_publish_failed dropped=%d", len(events))


async def _send_all(
    layer, events: list[tuple[str, dict]], message_type: str, *, strict: bool = False
) -> None:
    for sent, (group, event) in enumerate(events):
        try:
            await layer.group_send(group, {"type": message_type, "event": as_json(event)})
        except Exception:
            if strict:
                raise
            logger.exception(
                "event_publish_failed group=%s event=%s dropped=%d",
                group,
                event.get("event"),
                len(events) - sent,
            )
            return


class _BackgroundPublisher:
    """One daemon thread per process running one event loop, which keeps its connection to
    the layer: what commits hands its events over and goes on at once.

    Publishing in the committing thread cost a new loop and a new Redis connection per
    commit, a third of the web's order throughput (`make bench`: 44 orders/s against 69
    without events), and a frozen Redis held each request for a socket timeout. Events
    leave in the order they were handed over. Created lazily, and again in a forked child
    (gunicorn and Celery workers fork), since a thread does not survive a fork. A process
    that exits normally waits up to 2 s for what is still queued (`drain`); one that is
    killed loses it, like any live update to a dead layer.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._pid = None
        self._loop = None
        self._sending: set[concurrent.futures.Future] = set()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._pid != os.getpid():
                self._loop = asyncio.new_event_loop()
                threading.Thread(
                    target=self._loop.run_forever, name="event-publisher", daemon=True
                ).start()
                self._pid = os.getpid()
                self._sending = set()  # a forked child waits for none of its parent's
            return self._loop

    def submit(
        self, layer, events: list[tuple[str, dict]], message_type: str, *, strict: bool = False
    ) -> concurrent.futures.Future:
        sending = asyncio.run_coroutine_threadsafe(
            _send_all(layer, events, message_type, strict=strict), self._running_loop()
        )
        self._sending.add(sending)
        sending.add_done_callback(self._sending.discard)
        return sending

    def drain(self, timeout: float = 2.0) -> None:
        """Wait up to `timeout` seconds for what was handed over: a short-lived process (a
        management command revoking a token) would otherwise exit with it still queued."""
        if self._pid == os.getpid():
            concurrent.futures.wait(list(self._sending), timeout=timeout)


_publisher = _BackgroundPublisher()
atexit.register(_publisher.drain)


def publish_in_background(
    events: list[tuple[str, dict]], *, message_type: str = MESSAGE_TYPE
) -> None:
    """Hand `events` to this process's publisher thread; the in-memory layer (the embedded
    mode) is sent to at once instead, since it lives on the event loop of the server itself."""
    layer = get_channel_layer()
    if layer is None or not events:
        return
    if isinstance(layer, InMemoryChannelLayer):
        publish_many(events, message_type=message_type)
    else:
        _publisher.submit(layer, events, message_type)


def publish_many_on_commit(
    events: list[tuple[str, dict]], *, message_type: str = MESSAGE_TYPE
) -> None:
    """Publish `events` in the background once the surrounding transaction commits (at once
    outside one). `message_type` names the consumers' handler: an event by default."""
    if events:
        on_commit(lambda: publish_in_background(events, message_type=message_type), robust=True)


def publish_and_wait(events: list[tuple[str, dict]], *, timeout: float = 5.0) -> None:
    """Send each `(group, event)` in order and return once all were sent; raise if one was
    not (the relay then leaves them unrelayed, to try again). Sent from this process's
    publisher thread, whose connection to the layer stays open between calls."""
    layer = get_channel_layer()
    if layer is None or not events:
        return
    if isinstance(layer, InMemoryChannelLayer):
        async_to_sync(_send_all)(layer, events, MESSAGE_TYPE, strict=True)
    else:
        _publisher.submit(layer, events, MESSAGE_TYPE, strict=True).result(timeout)
