"""Market data endpoints: ingestion (staff/feed) and public reads."""

from drf_yasg import openapi
from drf_yasg.utils import swagger_auto_schema
from rest_framework import permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from stockflow.exceptions import NotFound
from stockflow.fields import TickerField
from stockflow.permissions import IsStaffOrMarketDataFeed

from .selectors import latest_quote_cached, latest_quotes_cached, quote_history
from .serializers import HistoryQuerySerializer, QuoteListSerializer, QuoteSerializer
from .services import quotes_ingest

QUOTE_EXAMPLE = {
    "ticker": "AAPL",
    "open_price": "189.5000",
    "close_price": "191.2500",
    "high": "192.0000",
    "low": "188.7500",
    "volume": 53211000,
    "timestamp": "2025-01-02T21:00:00Z",
}
INGEST_BODY = openapi.Schema(
    title="QuoteOrQuotes",
    description="One quote, or a list of 1 to 1,000 quotes (all stored, or none).",
    type=openapi.TYPE_OBJECT,
    properties={
        "ticker": openapi.Schema(type=openapi.TYPE_STRING, example="AAPL"),
        "open_price": openapi.Schema(type=openapi.TYPE_STRING, format="decimal", example="189.5"),
        "close_price": openapi.Schema(type=openapi.TYPE_STRING, format="decimal", example="191.25"),
        "high": openapi.Schema(type=openapi.TYPE_STRING, format="decimal", example="192"),
        "low": openapi.Schema(type=openapi.TYPE_STRING, format="decimal", example="188.75"),
        "volume": openapi.Schema(type=openapi.TYPE_INTEGER, example=53211000),
        "timestamp": openapi.Schema(
            type=openapi.TYPE_STRING,
            example="2025-01-02T21:00:00Z",
            description="ISO 8601 date/datetime or epoch seconds; defaults to now.",
        ),
    },
    required=["ticker", "open_price", "close_price", "high", "low", "volume"],
    example=QUOTE_EXAMPLE,
)


def _clean_ticker(raw: str) -> str:
    try:
        return TickerField().run_validation(raw)
    except ValidationError as exc:
        raise ValidationError({"ticker": exc.detail}) from exc


class StockViewSet(viewsets.GenericViewSet):
    serializer_class = QuoteSerializer
    lookup_field = "ticker"
    lookup_value_regex = r"[^/]+"

    def get_permissions(self):
        if self.action == "create":
            return [IsStaffOrMarketDataFeed()]
        return [permissions.AllowAny()]

    @swagger_auto_schema(
        operation_summary="Ingest quotes (staff or feed account)",
        request_body=INGEST_BODY,
        responses={201: QuoteSerializer(many=True), 409: "Same ticker and timestamp twice"},
    )
    def create(self, request):
        many = isinstance(request.data, list)
        serializer_class = QuoteListSerializer if many else QuoteSerializer
        serializer = serializer_class(data=request.data)
        serializer.is_valid(raise_exception=True)
        quotes = serializer.validated_data if many else [serializer.validated_data]
        stored = quotes_ingest(quotes=quotes)
        data = QuoteSerializer(stored, many=True).data
        return Response(data if many else data[0], status=status.HTTP_201_CREATED)

    @swagger_auto_schema(
        operation_summary="Latest quote of every ticker",
        responses={200: QuoteSerializer(many=True)},
        security=[],
    )
    def list(self, request):
        return Response(QuoteSerializer(latest_quotes_cached(), many=True).data)

    @swagger_auto_schema(
        operation_summary="Latest quote of one ticker",
        responses={200: QuoteSerializer, 404: "No quotes for this ticker"},
        security=[],
    )
    def retrieve(self, request, ticker=None):
        ticker = _clean_ticker(ticker)
        quote = latest_quote_cached(ticker=ticker)
        if quote is None:
            raise NotFound(f"No quotes for ticker '{ticker}'.", "unknown_ticker")
        return Response(QuoteSerializer(quote).data)

    @swagger_auto_schema(
        operation_summary="Quote history, oldest first",
        operation_description="`start`/`end` are inclusive: ISO 8601 date or datetime, or epoch "
        "seconds (a bare `end` date covers that whole day). Paginated with `limit`/`offset`.",
        query_serializer=HistoryQuerySerializer,
        responses={200: QuoteSerializer(many=True), 404: "No quotes for this ticker"},
        security=[],
    )
    @action(detail=True, methods=["get"])
    def history(self, request, ticker=None):
        ticker = _clean_ticker(ticker)
        query = HistoryQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        if latest_quote_cached(ticker=ticker) is None:
            raise NotFound(f"No quotes for ticker '{ticker}'.", "unknown_ticker")
        bounds = query.validated_data
        quotes = quote_history(ticker=ticker, start=bounds.get("start"), end=bounds.get("end"))
        page = self.paginate_queryset(quotes)
        return self.get_paginated_response(QuoteSerializer(page, many=True).data)
