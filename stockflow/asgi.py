"""The ASGI application: Django's HTTP app, and the /ws/ live-update routes of the apps.

`uvicorn stockflow.asgi:application` serves both: the Procfile's `ws` process, and the
embedded mode of `make run`. Only routing lives here; each stream's consumer lives in the
app that owns it. Django's HTTP app sits behind stockflow.middleware's gate, which keeps
the body limit while a body arrives and refuses a charset other than UTF-8 before Django
builds the request.
"""

import os

from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.core.asgi import get_asgi_application
from django.urls import re_path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stockflow.settings")
# Sets Django up: the routes below import models.
django_application = get_asgi_application()

from stockflow.middleware import ASGIRequestGate  # noqa: E402
from stockflow.streams import BrowserOriginValidator  # noqa: E402
from stocks.routing import websocket_urlpatterns as quote_routes  # noqa: E402
from transactions.routing import websocket_urlpatterns as order_routes  # noqa: E402

http_application = ASGIRequestGate(django_application)

application = ProtocolTypeRouter(
    {
        "http": http_application,
        "websocket": BrowserOriginValidator(
            URLRouter(
                # Any other path is refused at the handshake (403), not a server error.
                [*quote_routes, *order_routes, re_path(r"", WebsocketDenier.as_asgi())]
            ),
            settings.WS_ALLOWED_ORIGINS,
        ),
    }
)
