"""What the live-update WebSocket streams share: the consumer base, close codes, Origin check,
the per-address connection slots of /ws/quotes/, and the message that closes revoked streams.

Each stream's consumer lives in the app that owns it (`stocks.consumers` for quotes,
`transactions.consumers` for a user's orders) and `stockflow.asgi` routes to them. A stream
only sends: every message is one event of `stockflow.events`, as JSON text.
"""

import asyncio
import json
import logging
import random
import weakref

import redis.asyncio as redis
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.security.websocket import OriginValidator
from django.conf import settings
from rest_framework.settings import api_settings

from stockflow.events import orders_group, publish_many_on_commit

logger = logging.getLogger(__name__)

# Application close codes (RFC 6455 leaves 4000-4999 to applications): 4000 + the HTTP status.
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_GONE = 4410
CLOSE_TOO_MANY_CONNECTIONS = 4429
READ_ONLY = "This stream only sends events; messages from the client are not read."

# What makes an orders stream close with 4401: handled by OrdersConsumer.credentials_revoked.
REVOKED_TYPE = "credentials.revoked"


class EventStreamConsumer(AsyncWebsocketConsumer):
    """Forwards the events published to the groups it joined, as JSON text."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.periodic: list[asyncio.Task] = []

    async def join(self, groups: list[str]) -> None:
        """Join `groups` before accepting, so no event published after the handshake is missed.

        Channels leaves the groups listed in `self.groups` on disconnect.
        """
        self.groups = []
        for group in groups:
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups.append(group)

    def every(self, seconds: float, action) -> None:
        """Await `action()` about every `seconds` until the connection ends.

        Each wait is drawn from 90-110 % of `seconds`, so clients that connected together (a
        reconnect storm, the bench's fan-out) do not all act in the same instant. An error is
        logged and the next round goes on: a passing outage must not kill the stream.
        """

        async def repeat():
            while True:
                await asyncio.sleep(seconds * random.uniform(0.9, 1.1))
                try:
                    await action()
                except Exception:
                    logger.exception("ws_periodic_failed action=%s", action.__name__)

        self.periodic.append(asyncio.create_task(repeat()))

    async def websocket_disconnect(self, message):
        for task in self.periodic:
            task.cancel()
        await super().websocket_disconnect(message)

    async def event_message(self, message: dict) -> None:
        await self.send_event(message["event"])

    async def send_event(self, event: dict) -> None:
        await self.send(text_data=json.dumps(event, separators=(",", ":")))

    async def send_error(self, *, code: str, detail: str) -> None:
        await self.send_event({"event": "error", "code": code, "detail": detail})

    async def refuse(self, *, code: str, detail: str, close_code: int) -> None:
        """Accept, say why in one `error` event, and close: a client cannot read the reason
        of a handshake refused with HTTP 403, and browsers do not even show the status."""
        await self.accept()
        await self.send_error(code=code, detail=detail)
        await self.close(code=close_code)

    async def receive(self, text_data=None, bytes_data=None):
        # Answered rather than dropped, so a client that expects a protocol learns it has none.
        await self.send_error(code="read_only", detail=READ_ONLY)


class BrowserOriginValidator(OriginValidator):
    """Channels' Origin check, but a handshake without an Origin header passes.

    Browsers always send Origin, so a page from a site not in WS_ALLOWED_ORIGINS is refused
    (403). A client without one (a script, websocat) is not a browser: no page can ride its
    credentials, and the streams authenticate with a token the client must present anyway.
    """

    def valid_origin(self, parsed_origin) -> bool:
        return parsed_origin is None or super().valid_origin(parsed_origin)


def orders_streams_close_on_commit(*, user_id: int, token_key: str | None = None) -> None:
    """Once the surrounding transaction commits, close the open /ws/orders/ streams of
    `user_id` with 4401: those authenticated with `token_key`, or all of them when None.

    Travels like an event (after the commit, from the background publisher, over the channel
    layer to every ws process), so a lost message is as possible as a lost event: the orders
    consumer also re-checks its credentials every WS_AUTH_RECHECK_SECONDS. The key of a
    deleted token is worthless, so it may cross Redis.
    """
    revoked = {"event": "revoked", "token": token_key}
    publish_many_on_commit([(orders_group(user_id), revoked)], message_type=REVOKED_TYPE)


# --- Client addresses and connection slots (/ws/quotes/) ---------------------------------

# Enough of an address to tell clients apart, however long a proxy's header made it.
ADDRESS_SHOWN = 64


def client_address(scope: dict) -> str:
    """The client's address as the API's throttles see it (DRF's `get_ident`): with
    NUM_PROXIES = N > 0, the N-th address from the right of X-Forwarded-For, else the peer.

    uvicorn runs with --no-proxy-headers, so `scope["client"]` is the peer as connected: this
    is the one place X-Forwarded-For is read, and only NUM_PROXIES makes it trusted. No
    address at all (a test, a Unix socket) counts as "".
    """
    peer = (scope.get("client") or ("",))[0] or ""
    proxies = api_settings.NUM_PROXIES
    if proxies:
        forwarded = b",".join(v for k, v in scope.get("headers", []) if k == b"x-forwarded-for")
        if forwarded:
            hops = forwarded.decode("latin-1").split(",")
            return hops[-min(proxies, len(hops))].strip()[:ADDRESS_SHOWN]
    return peer[:ADDRESS_SHOWN]


class LocalSlots:
    """Connections per address within this process: the embedded mode's one process."""

    KEEP_EVERY = None  # a slot here dies with its process: nothing to refresh

    def __init__(self):
        self.held: dict[str, set[str]] = {}

    async def take(self, address: str, holder: str, most: int) -> bool:
        holders = self.held.setdefault(address, set())
        if len(holders) >= most:
            return False
        holders.add(holder)
        return True

    async def give_back(self, address: str, holder: str) -> None:
        holders = self.held.get(address, set())
        holders.discard(holder)
        if not holders:
            self.held.pop(address, None)


# KEYS[1]: the address's sorted set, one member per connection scored with its expiry time.
# ARGV: the member, the most members (0: no limit, a refresh), seconds a member lives.
# Redis' own clock, so ws processes on hosts whose clocks differ agree on what expired.
TAKE_SLOT = """
local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local most = tonumber(ARGV[2])
if most > 0 and not redis.call('ZSCORE', KEYS[1], ARGV[1])
    and redis.call('ZCARD', KEYS[1]) >= most then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3])))
return 1
"""


class RedisSlots:
    """Connections per address across every ws process, in Redis: a sorted set per address
    whose members expire unless their connection refreshes them, so a process that died
    without closing its connections holds their slots `SLOT_SECONDS` at most.

    Counting and adding are one script, atomic in Redis: racing handshakes never overshoot.
    A Redis that fails lets the connection in (logged): the stream needs the same Redis for
    its events, so refusing would add nothing but a second outage.
    """

    SLOT_SECONDS = 60.0
    KEEP_EVERY = SLOT_SECONDS / 3  # a refresh may fail twice before the slot lapses

    def __init__(self, url: str, prefix: str, timeout: float | None):
        self.url, self.prefix, self.timeout = url, prefix, timeout
        self._clients = weakref.WeakKeyDictionary()

    def _connection(self):
        """This event loop's client and script: redis.asyncio connections belong to the
        loop that opened them (one per uvicorn process; one per test scenario)."""
        loop = asyncio.get_running_loop()
        if loop not in self._clients:
            client = redis.Redis.from_url(
                self.url, socket_connect_timeout=self.timeout, socket_timeout=self.timeout
            )
            self._clients[loop] = (client, client.register_script(TAKE_SLOT))
        return self._clients[loop]

    def _key(self, address: str) -> str:
        return f"{self.prefix}:ws-connections:{address}"

    async def _take(self, address: str, holder: str, most: int) -> bool:
        _, take = self._connection()
        return bool(await take(keys=[self._key(address)], args=[holder, most, self.SLOT_SECONDS]))

    async def take(self, address: str, holder: str, most: int) -> bool:
        try:
            return await self._take(address, holder, most)
        except redis.RedisError:
            logger.warning("ws_slots_unavailable address=%s: connection let in", address)
            return True

    async def keep(self, address: str, holder: str) -> None:
        try:
            await self._take(address, holder, 0)
        except redis.RedisError:  # the next refresh may succeed before the slot lapses
            logger.warning("ws_slots_unavailable address=%s: slot not refreshed", address)

    async def give_back(self, address: str, holder: str) -> None:
        try:
            client, _ = self._connection()
            await client.zrem(self._key(address), holder)
        except redis.RedisError:  # it expires by itself
            logger.warning("ws_slots_unavailable address=%s: slot left to expire", address)


_local_slots = LocalSlots()
_redis_slots: dict[tuple, RedisSlots] = {}


def connection_slots() -> LocalSlots | RedisSlots:
    """Redis slots when the channel layer is Redis (the ws processes share them), else this
    process's own."""
    layer = settings.CHANNEL_LAYERS["default"]
    if "redis" not in layer["BACKEND"]:
        return _local_slots
    host = layer["CONFIG"]["hosts"][0]
    url = host["address"] if isinstance(host, dict) else host
    timeout = host.get("socket_timeout") if isinstance(host, dict) else None
    where = (url, layer["CONFIG"].get("prefix", "asgi"), timeout)
    if where not in _redis_slots:
        _redis_slots[where] = RedisSlots(*where)
    return _redis_slots[where]
