"""What the live-update WebSocket streams share: the consumer base, close codes, Origin check.

Each stream's consumer lives in the app that owns it (`stocks.consumers` for quotes,
`transactions.consumers` for a user's orders) and `stockflow.asgi` routes to them. A stream
only sends: every message is one event of `stockflow.events`, as JSON text.
"""

import json

from channels.generic.websocket import AsyncWebsocketConsumer
from channels.security.websocket import OriginValidator

# An application close code (RFC 6455 leaves 4000-4999 to applications): 4000 + HTTP 400.
CLOSE_BAD_REQUEST = 4400
READ_ONLY = "This stream only sends events; messages from the client are not read."


class EventStreamConsumer(AsyncWebsocketConsumer):
    """Forwards the events published to the groups it joined, as JSON text."""

    async def join(self, groups: list[str]) -> None:
        """Join `groups` before accepting, so no event published after the handshake is missed.

        Channels leaves the groups listed in `self.groups` on disconnect.
        """
        self.groups = []
        for group in groups:
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups.append(group)

    async def event_message(self, message: dict) -> None:
        await self.send_event(message["event"])

    async def send_event(self, event: dict) -> None:
        await self.send(text_data=json.dumps(event, separators=(",", ":")))

    async def send_error(self, *, code: str, detail: str) -> None:
        await self.send_event({"event": "error", "code": code, "detail": detail})

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
