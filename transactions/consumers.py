"""The orders stream, /ws/orders/: the caller's own order events, never another user's.

Authenticated with the API's token, in the `Authorization: Token <key>` header or, for
clients that cannot set headers on a WebSocket handshake (browsers), the `token` query
parameter; the header wins when both are given. Without a valid token of an active account
the handshake is refused (HTTP 403) before anything is joined. The group comes from the
token alone: there is no parameter that could name another account.

An open stream follows its credentials: deleting its token, deactivating the account or
changing its password closes it with an `error` event `credentials_revoked` and code 4401
(users.signals sends the message after the commit), and every WS_AUTH_RECHECK_SECONDS it
re-reads them itself, in case that message was lost.

Every event carries the account's `seq`, and the stream sends each once, in `seq` order:
`?since=<seq>` first replays the outbox's events after it, then goes on live. A live event
at or below the last one sent is dropped (a duplicate, or one the replay already sent); one
past the next reads the missing ones from the outbox first, so a message the channel layer
lost leaves no gap. Every WS_HEARTBEAT_SECONDS the stream reads what it may have missed and
sends `{"type": "heartbeat", "event": "heartbeat", "seq": <latest>}`.
"""

import asyncio
from typing import NamedTuple
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.conf import settings
from rest_framework.authtoken.models import Token

from events.errors import EventsPruned, SinceAhead
from events.selectors import events_after, latest_seq, since_check
from stockflow.events import orders_group
from stockflow.pagination import WHOLE_NUMBER
from stockflow.streams import (
    CLOSE_BAD_REQUEST,
    CLOSE_GONE,
    CLOSE_UNAUTHORIZED,
    EventStreamConsumer,
)

KEYWORD = b"token"
# Events read from the outbox per query while catching up.
CATCH_UP_PAGE = 500
INVALID_SINCE = "since must be a whole number: the seq of the last event you saw."
REVOKED = (
    "The token was deleted, the account deactivated or its password changed: connect again "
    "with a valid token."
)


class Credentials(NamedTuple):
    user_id: int
    # Django's own "did the password change" fingerprint (what logs sessions out).
    password_hash: str


def token_key(scope: dict) -> str | None:
    """The key from `Authorization: Token <key>` (keyword in any case, as DRF reads it), else
    from `?token=`; None when neither is there."""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            parts = value.split()
            if len(parts) == 2 and parts[0].lower() == KEYWORD:
                return parts[1].decode("latin-1")
            return None  # a malformed header is not silently replaced by the query
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
    return values[0] if values else None


def since_of(scope: dict) -> int | None:
    """`?since=` as a number; None when absent. Raises ValueError when it is not a number."""
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("since")
    if not values:
        return None
    if not WHOLE_NUMBER.fullmatch(values[0]):
        raise ValueError(values[0])
    return int(values[0])


@database_sync_to_async
def credentials_for(key: str) -> Credentials | None:
    token = Token.objects.select_related("user").filter(key=key).first()
    if token is None or not token.user.is_active:
        return None
    return Credentials(token.user.pk, token.user.get_session_auth_hash())


@database_sync_to_async
def starting_seq(account_id: int, since: int | None) -> int:
    """Where the stream starts: after `since` (checked: not pruned, not past the latest), or,
    without one, after the latest event, so only what happens from now on is sent."""
    if since is None:
        return latest_seq(account_id=account_id)
    since_check(account_id=account_id, since=since)
    return since


@database_sync_to_async
def messages_after(account_id: int, seq: int) -> list[dict]:
    page = events_after(account_id=account_id, since=seq)[:CATCH_UP_PAGE]
    return [event.as_message() for event in page]


class OrdersConsumer(EventStreamConsumer):
    key = None
    credentials = None
    # The seq of the last event sent: nothing at or below it is sent again.
    last_seq = 0

    async def connect(self):
        key = token_key(self.scope)
        credentials = await credentials_for(key) if key else None
        if credentials is None:
            await self.close()  # before accept: the server answers the handshake with 403
            return
        self.key, self.credentials = key, credentials
        self.account_id = credentials.user_id
        self.sending = asyncio.Lock()  # one sender at a time: live events, catch-up, heartbeat
        await self.join([orders_group(credentials.user_id)])
        # Read again once joined: a revocation that committed between the first read and the
        # join sent its closing message to a group this stream was not in yet. One that
        # commits after this read finds it joined.
        if await credentials_for(key) != credentials:
            await self.close()
            return
        # Joined first, read second: an event relayed from now on waits in this consumer's
        # channel until the catch-up below has sent everything up to it, and is dropped then.
        try:
            self.last_seq = await starting_seq(credentials.user_id, since_of(self.scope))
        except ValueError:
            await self.refuse(
                code="invalid_since", detail=INVALID_SINCE, close_code=CLOSE_BAD_REQUEST
            )
            return
        except (EventsPruned, SinceAhead) as error:
            close_code = CLOSE_GONE if isinstance(error, EventsPruned) else CLOSE_BAD_REQUEST
            await self.refuse(code=error.code, detail=error.detail, close_code=close_code)
            return
        await self.accept()
        async with self.sending:
            await self.catch_up()
        if settings.WS_AUTH_RECHECK_SECONDS:
            self.every(settings.WS_AUTH_RECHECK_SECONDS, self.recheck)
        if settings.WS_HEARTBEAT_SECONDS:
            self.every(settings.WS_HEARTBEAT_SECONDS, self.heartbeat)

    async def send_numbered(self, event: dict) -> None:
        """Send an account event unless the stream was revoked meanwhile (hold `self.sending`)."""
        if self.credentials is not None:
            await self.send_event(event)
            self.last_seq = event["seq"]

    async def catch_up(self) -> None:
        """Send the account's events after the last one sent, from the outbox (hold
        `self.sending`); stops as soon as the stream is revoked."""
        while self.credentials is not None:
            messages = await messages_after(self.account_id, self.last_seq)
            for message in messages:
                await self.send_numbered(message)
            if len(messages) < CATCH_UP_PAGE:
                return

    async def event_message(self, message: dict) -> None:
        event = message["event"]
        async with self.sending:
            if event["seq"] > self.last_seq + 1:  # one went missing: read it from the outbox
                await self.catch_up()
            if event["seq"] > self.last_seq:
                await self.send_numbered(event)

    async def heartbeat(self) -> None:
        """Send what the stream may have missed (nothing, unless a live event was lost and no
        later one came), then the latest seq: a quiet stream says it is alive."""
        async with self.sending:
            await self.catch_up()
            if self.credentials is not None:
                beat = {"type": "heartbeat", "event": "heartbeat", "seq": self.last_seq}
                await self.send_event(beat)

    async def recheck(self) -> None:
        """One primary-key read per stream per WS_AUTH_RECHECK_SECONDS (500 streams at 60 s:
        ~8 reads a second), for a revocation whose message never arrived, or a change that
        bypassed the signals (a queryset `update()`)."""
        if await credentials_for(self.key) != self.credentials:
            await self.revoke()

    async def credentials_revoked(self, message: dict) -> None:
        """From orders_streams_close_on_commit: every stream of the account, or only those of
        the deleted token (a new token's streams stay)."""
        token = message["event"]["token"]
        if token is None or token == self.key:
            await self.revoke()

    async def revoke(self) -> None:
        if self.credentials is None:  # already closing
            return
        self.credentials = None  # a catch-up under way sends nothing more
        async with self.sending:  # and the error comes after what it already sent
            await self.send_error(code="credentials_revoked", detail=REVOKED)
            await self.close(code=CLOSE_UNAUTHORIZED)
