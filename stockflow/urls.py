"""URLs: every API route at the root and again under /api/; Swagger documents the root."""

from django.contrib import admin
from django.urls import include, path, re_path
from drf_yasg import openapi
from drf_yasg.views import get_schema_view
from rest_framework import permissions
from rest_framework.routers import SimpleRouter

from events.views import EventListView
from stocks.views import StockViewSet
from transactions.views import PortfolioView, TransactionViewSet, TransferView
from users.views import ObtainTokenView, UserViewSet, admin_login

from .health import health
from .index import index

router = SimpleRouter()
# A missing trailing slash must still route (no redirect that turns a POST into a GET).
router.trailing_slash = "/?"
router.register("users", UserViewSet, basename="user")
router.register("stocks", StockViewSet, basename="stock")
router.register("transactions", TransactionViewSet, basename="transaction")

api_patterns = [
    re_path(r"^$", index, name="index"),
    # The portfolio and the transfers live under the account's URL, but belong to transactions/.
    re_path(
        r"^users/(?P<username>[^/\x00]+)/portfolio/?$", PortfolioView.as_view(), name="portfolio"
    ),
    re_path(
        r"^users/(?P<username>[^/\x00]+)/transfers/?$", TransferView.as_view(), name="transfers"
    ),
    *router.urls,
    re_path(r"^events/?$", EventListView.as_view(), name="events"),
    re_path(r"^auth/token/?$", ObtainTokenView.as_view(), name="auth-token"),
    re_path(r"^health/?$", health, name="health"),
]

api_info = openapi.Info(
    title="StockFlow API",
    default_version="v1",
    description=(
        "Register with a cash balance, read market data, and submit buy/sell market orders "
        "that Celery workers settle asynchronously. Authenticate with `Authorization: Token "
        "<key>` (the token comes back from `POST /users/` or `POST /auth/token/`). Every route "
        "is also served under `/api/`. Money is a decimal string; timestamps are UTC ISO 8601."
        "\n\n**Live updates over WebSocket** (Swagger cannot describe them; see the README's "
        '"Live updates"): `/ws/quotes/?tickers=AAPL,MSFT` (public) sends every quote stored '
        'for those tickers as `{"event": "quote", "quote": {...}}`; `/ws/orders/` '
        "(a token in `Authorization: Token <key>` or `?token=<key>`, else the handshake is "
        "refused with 403) sends the caller's own order events (`submitted`, `triggered`, "
        "`completed`, `failed`, `cancelled`, `expired`, `replaced`) with the order and the "
        "new `balance`, `reserved` and `buying_power`, and a `transfer` event for each deposit "
        "or withdrawal, each with the account's `seq` (1, 2, 3, ... with no gap) and its "
        "`created_at`. `/ws/orders/?since=<seq>` first replays the events after that seq (as "
        "`GET /events/?since=` lists them), then goes on live, never sending a seq twice; "
        'every `WS_HEARTBEAT_SECONDS` (15) it sends `{"type": "heartbeat", "event": '
        '"heartbeat", "seq": <the last seq sent>}`. A `since` it cannot resume from gets an '
        "`error` event and close code 4400 (`invalid_since`, `since_ahead`) or 4410 "
        "(`events_pruned`). The stream closes with code 4401 once its "
        "token is deleted, the account deactivated or its password changed. A client address "
        "may hold 20 `/ws/quotes/` connections at once (`WS_MAX_CONNECTIONS_PER_ADDRESS`); "
        "one more gets an `error` event `too_many_connections` and close code 4429. Served "
        "by the `ws` process "
        "(`ws://<host>:8001/ws/...`) in the real system, on the API's own address in the "
        "embedded mode."
    ),
)

schema_view = get_schema_view(
    api_info, public=True, permission_classes=[permissions.AllowAny], patterns=api_patterns
)

urlpatterns = [
    path("admin/login/", admin_login, name="admin-login"),
    path("admin/", admin.site.urls),
    re_path(r"^swagger\.(?P<format>json|yaml)$", schema_view.without_ui(), name="schema"),
    re_path(r"^swagger/?$", schema_view.with_ui("swagger"), name="swagger-ui"),
    re_path(r"^redoc/?$", schema_view.with_ui("redoc"), name="redoc"),
    *api_patterns,
    path("api/", include((api_patterns, "api"))),
]

handler400 = "stockflow.exceptions.handler400"
handler403 = "stockflow.exceptions.handler403"
handler404 = "stockflow.exceptions.handler404"
handler500 = "stockflow.exceptions.handler500"
