"""WebSocket routes of the trading context (stockflow.asgi mounts them)."""

from django.urls import re_path

from .consumers import OrdersConsumer

websocket_urlpatterns = [
    re_path(r"^ws/orders/?$", OrdersConsumer.as_asgi()),
]
