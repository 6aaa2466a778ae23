"""The orders stream, /ws/orders/: the caller's own order events, never another user's.

Authenticated with the API's token, in the `Authorization: Token <key>` header or, for
clients that cannot set headers on a WebSocket handshake (browsers), the `token` query
parameter; the header wins when both are given. Without a valid token of an active account
the handshake is refused (HTTP 403) before anything is joined. The group comes from the
token alone: there is no parameter that could name another account.
"""

from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from rest_framework.authtoken.models import Token

from stockflow.events import orders_group
from stockflow.streams import EventStreamConsumer

KEYWORD = b"token"


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
def user_id_for(key: str) -> int | None:
    token = Token.objects.select_related("user").filter(key=key).first()
    if token is None or not token.user.is_active:
        return None
    return token.user.pk


class OrdersConsumer(EventStreamConsumer):
    async def connect(self):
        key = token_key(self.scope)
        user_id = await user_id_for(key) if key else None
        if user_id is None:
            await self.close()  # before accept: the server answers the handshake with 403
            return
        await self.join([orders_group(user_id)])
        await self.accept()
