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
"""

from typing import NamedTuple
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.conf import settings
from rest_framework.authtoken.models import Token

from stockflow.events import orders_group
from stockflow.streams import CLOSE_UNAUTHORIZED, EventStreamConsumer

KEYWORD = b"token"
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


@database_sync_to_async
def credentials_for(key: str) -> Credentials | None:
    token = Token.objects.select_related("user").filter(key=key).first()
    if token is None or not token.user.is_active:
        return None
    return Credentials(token.user.pk, token.user.get_session_auth_hash())


class OrdersConsumer(EventStreamConsumer):
    key = None
    credentials = None

    async def connect(self):
        key = token_key(self.scope)
        credentials = await credentials_for(key) if key else None
        if credentials is None:
            await self.close()  # before accept: the server answers the handshake with 403
            return
        self.key, self.credentials = key, credentials
        await self.join([orders_group(credentials.user_id)])
        # Read again once joined: a revocation that committed between the first read and the
        # join sent its closing message to a group this stream was not in yet. One that
        # commits after this read finds it joined.
        if await credentials_for(key) != credentials:
            await self.close()
            return
        await self.accept()
        if settings.WS_AUTH_RECHECK_SECONDS:
            self.every(settings.WS_AUTH_RECHECK_SECONDS, self.recheck)

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
        self.credentials = None
        await self.send_error(code="credentials_revoked", detail=REVOKED)
        await self.close(code=CLOSE_UNAUTHORIZED)
