"""Market data endpoints: ingestion (staff/feed) and public reads."""

from django.conf import settings
from drf_yasg import openapi
from drf_yasg.utils import swagger_auto_schema
from rest_framework import permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from stockflow.fields import TickerField
from stockflow.permissions import IsStaffOrMarketDataFeed
from stockflow.responses import JSONBytes
from stockflow.schema import BODY, COMMON, error_response, errors, example_of

from .errors import DuplicateQuote, UnknownTicker
from .selectors import latest_quote_json, latest_quotes_json, quote_history
from .serializers import HistoryQuerySerializer, QuoteListSerializer, QuoteSerializer
from .services import quotes_ingest

UNKNOWN_TICKER = error_response(
    404,
    "No quotes for this ticker.",
    example_of(UnknownTicker(ticker="ZZZZ")),
)
BAD_TICKER = error_response(
    400,
    "The ticker, or a query parameter, is malformed.",
    {"ticker": ["A ticker is 1-10 characters of A-Z, 0-9, '.' and '-'."]},
)


def _quote_data(quote: dict) -> dict:
    return QuoteSerializer(quote).data


_TICKER = TickerField()  # stateless: built once, not per request


def _clean_ticker(raw: str) -> str:
    try:
        return _TICKER.run_validation(raw)
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
        operation_id="stocks_ingest",
        operation_summary="Ingest quotes (staff or feed account)",
        operation_description="One quote, or a list of up to "
        f"{settings.MAX_QUOTES_PER_REQUEST:,} stored all or none; answered in the same form. "
        "A quote needs prices > 0 with `low <= min(open, close)` and `high >= max(open, close)`; "
        "`timestamp` defaults to now. The same ticker and timestamp twice is a 409.",
        request_body=QuoteSerializer,
        one_or_many=settings.MAX_QUOTES_PER_REQUEST,
        responses={
            201: openapi.Response("Stored: the quote, or the list of quotes.", QuoteSerializer),
            **errors(*BODY, *COMMON),
            403: error_response(
                403,
                "Needs staff or the `stocks.add_stockdata` permission.",
                {
                    "detail": "Posting market data needs a staff account or the "
                    "stocks.add_stockdata permission.",
                    "code": "permission_denied",
                },
            ),
            409: error_response(
                409,
                "A quote for this ticker and timestamp is already stored, or sent twice.",
                example_of(DuplicateQuote()),
            ),
        },
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
        operation_id="stocks_list",
        operation_summary="Latest quote of every ticker",
        operation_description="Sorted by ticker; not paginated.",
        responses={
            200: openapi.Response("Latest quotes.", QuoteSerializer(many=True)),
            **errors(*COMMON),
        },
        security=[],
    )
    def list(self, request):
        return JSONBytes(latest_quotes_json(represent=lambda q: QuoteSerializer(q, many=True).data))

    @swagger_auto_schema(
        operation_id="stocks_read",
        operation_summary="Latest quote of one ticker",
        responses={
            200: openapi.Response("The latest quote.", QuoteSerializer),
            400: BAD_TICKER,
            404: UNKNOWN_TICKER,
            **errors(*COMMON),
        },
        security=[],
    )
    def retrieve(self, request, ticker=None):
        ticker = _clean_ticker(ticker)
        return JSONBytes(latest_quote_json(ticker=ticker, represent=_quote_data))

    @swagger_auto_schema(
        operation_id="stocks_history",
        operation_summary="Quote history, oldest first",
        operation_description="`start`/`end` are inclusive: ISO 8601 date or datetime, or epoch "
        "seconds (a bare `end` date covers that whole day). Paginated with `limit`/`offset`.",
        query_serializer=HistoryQuerySerializer,
        paginated=True,
        responses={
            200: openapi.Response("A page of quotes.", QuoteSerializer(many=True)),
            400: BAD_TICKER,
            404: UNKNOWN_TICKER,
            **errors(*COMMON),
        },
        security=[],
    )
    @action(detail=True, methods=["get"])
    def history(self, request, ticker=None):
        ticker = _clean_ticker(ticker)
        query = HistoryQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        latest_quote_json(ticker=ticker, represent=_quote_data)  # UnknownTicker: 404
        quotes = quote_history(ticker=ticker, **query.bounds)
        page = self.paginate_queryset(quotes)
        return self.get_paginated_response(QuoteSerializer(page, many=True).data)
