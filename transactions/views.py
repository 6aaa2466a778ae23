"""Transaction endpoints: submit, list (with date filters), read one, cancel while pending;
and the portfolio, which values the positions that settlement keeps."""

import re

from drf_yasg import openapi
from drf_yasg.utils import swagger_auto_schema
from rest_framework import generics, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from stockflow.schema import ACCOUNT, BODY, error_response, errors, example_of
from users.errors import NotYourAccount, UnknownUserId
from users.selectors import account_for
from users.views import UNKNOWN_USER as UNKNOWN_USERNAME

from .errors import (
    InsufficientBuyingPower,
    InvalidIdempotencyKey,
    NotOpen,
    NotPending,
    UnknownTransaction,
)
from .models import Transaction
from .selectors import portfolio_for_user, transactions_for_user, transfers_for_user
from .serializers import (
    PortfolioSerializer,
    TransactionFilterSerializer,
    TransactionReplaceSerializer,
    TransactionSerializer,
    TransactionSubmitSerializer,
    TransferCreateSerializer,
    TransferSerializer,
)
from .services import (
    transaction_cancel,
    transaction_replace,
    transaction_submit,
    transaction_submit_once,
    transfer_create,
    transfer_create_once,
)

IDEMPOTENCY_KEY = re.compile(r"[\x20-\x7e]{1,64}")


def idempotency_header(what: str, example: str) -> openapi.Parameter:
    return openapi.Parameter(
        "Idempotency-Key",
        openapi.IN_HEADER,
        "Makes retries safe: the same key from the same user within 24 hours returns the "
        f"{what} it first created (200) and creates nothing. 1-64 printable ASCII characters.",
        type=openapi.TYPE_STRING,
        pattern=rf"^{IDEMPOTENCY_KEY.pattern}$",
        required=False,
        **{"x-example": example},
    )


IDEMPOTENCY_HEADER = idempotency_header("transaction", "order-2025-01-02-0001")
NOT_YOURS = error_response(
    403,
    "Another user's account (staff may act on any).",
    example_of(NotYourAccount()),
)
UNKNOWN_USER = error_response(404, "No such user.", example_of(UnknownUserId(user_id=999)))
LISTED = {
    "paginated": True,
    "responses": {
        200: openapi.Response("A page of transactions.", TransactionSerializer(many=True)),
        **errors(400, *ACCOUNT),
        403: NOT_YOURS,
        404: UNKNOWN_USER,
    },
}
ONE = {
    **errors(*ACCOUNT),
    403: NOT_YOURS,
    404: error_response(
        404,
        "No such user, or no such transaction of this user.",
        example_of(UnknownTransaction(transaction_id=311, user_id=7)),
    ),
}


def _idempotency_key(request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
        raise InvalidIdempotencyKey()
    return key


class TransactionViewSet(viewsets.GenericViewSet):
    """`/transactions/{user_id}/...`: the lookup is the account, not a transaction."""

    serializer_class = TransactionSerializer
    lookup_field = "user_id"
    lookup_value_regex = r"[0-9]{1,18}"

    @swagger_auto_schema(
        operation_id="transactions_submit",
        operation_summary="Submit an order",
        operation_description="Omit `user_id` to trade on your own account.\n\n"
        "**Market** (the default `order_type`): priced now from the ticker's latest close, "
        "stored `pending`, settled asynchronously by a worker; a buy the cash does not cover "
        "ends `failed`. `transaction_price` = close x volume rounded to the cent against the "
        "account holder: up for a buy (at least 0.01), down for a sell.\n\n"
        "**limit, stop, stop_limit, trailing_stop**: stored `open` with a reservation — a buy "
        "reserves `limit_price` x volume rounded up to the cent (a stop or trailing-stop buy: "
        "stop plus the `STOP_BUY_COLLAR`, 5 %, rounded up, x volume), a sell its shares — or "
        "refused with 409 `insufficient_buying_power` / `insufficient_shares` when the unreserved"
        " cash or shares do not cover it. `unit_price`/`transaction_price` show what it reserves "
        "until it fills. Stored quotes trigger it (buy limit: close <= limit; sell limit: close "
        ">= limit; buy stop: close >= stop; sell stop: close <= stop; a stop-limit triggers like "
        "a stop, then fills like a limit; a trailing stop's stop follows the best close since "
        "submission by `trail_price` or `trail_percent`), and a worker fills it at that quote's "
        "close. If its condition holds at submission it fills at once at the current close. "
        "`time_in_force`: `day` (default; expires at the daily `MARKET_CLOSE_UTC` cut-off), "
        "`gtc`, or `ioc` (fills now or ends `expired`).",
        request_body=TransactionSubmitSerializer,
        manual_parameters=[IDEMPOTENCY_HEADER],
        responses={
            201: openapi.Response(
                "Submitted: `pending` (market), `open`, or `expired` (an ioc order that could "
                "not fill now).",
                TransactionSerializer,
            ),
            200: openapi.Response("Replay of an Idempotency-Key", TransactionSerializer),
            **errors(*BODY, *ACCOUNT),
            403: NOT_YOURS,
            404: error_response(
                404,
                "Unknown user or ticker.",
                {"detail": "No quotes for ticker 'ZZZZ'.", "code": "unknown_ticker"},
            ),
            409: error_response(
                409,
                "The unreserved cash or shares do not cover a new non-market order.",
                example_of(InsufficientBuyingPower(needed="1800.00", available="950.00")),
            ),
        },
    )
    def create(self, request):
        serializer = TransactionSubmitSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        key = _idempotency_key(request)
        user = account_for(caller=request.user, user_id=data.pop("user_id") or request.user.pk)
        if key is None:
            txn, created = transaction_submit(user=user, **data), True
        else:
            txn, created = transaction_submit_once(user=user, idempotency_key=key, **data)
        return Response(
            TransactionSerializer(txn).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )

    def _list(self, request, user_id, filters: dict):
        query = TransactionFilterSerializer(data=filters)
        query.is_valid(raise_exception=True)
        user = account_for(caller=request.user, user_id=int(user_id))
        txns = transactions_for_user(user_id=user.pk, **query.bounds)
        page = self.paginate_queryset(txns)
        return self.get_paginated_response(TransactionSerializer(page, many=True).data)

    @swagger_auto_schema(
        operation_id="transactions_list",
        operation_summary="A user's transactions, newest first",
        operation_description="`start_timestamp`/`end_timestamp` filter by submission time, both "
        "inclusive (a bare end date covers that whole day). Paginated with `limit`/`offset`.",
        query_serializer=TransactionFilterSerializer,
        **LISTED,
    )
    def retrieve(self, request, user_id=None):
        return self._list(request, user_id, request.query_params)

    @swagger_auto_schema(
        operation_id="transactions_between",
        operation_summary="A user's transactions between two timestamps (path form)",
        operation_description="The same as `?start_timestamp=&end_timestamp=`, in the path. "
        "Paginated with `limit`/`offset`.",
        tags=["transactions"],
        **LISTED,
    )
    @action(
        detail=True,
        methods=["get"],
        url_path=r"(?P<start_timestamp>[^/]+)/(?P<end_timestamp>[^/]+)",
        url_name="range",
    )
    def between(self, request, user_id=None, start_timestamp=None, end_timestamp=None):
        filters = {"start_timestamp": start_timestamp, "end_timestamp": end_timestamp}
        return self._list(request, user_id, filters)

    def _transaction(self, request, user_id, transaction_id) -> Transaction:
        user = account_for(caller=request.user, user_id=int(user_id))
        txn = Transaction.objects.filter(pk=int(transaction_id), user=user).first()
        if txn is None:
            raise UnknownTransaction(transaction_id=transaction_id, user_id=user_id)
        return txn

    @swagger_auto_schema(
        method="get",
        operation_id="transactions_read",
        operation_summary="One transaction",
        operation_description="One transaction of this user.",
        responses={200: openapi.Response("The transaction.", TransactionSerializer), **ONE},
    )
    @swagger_auto_schema(
        method="delete",
        operation_id="transactions_cancel",
        operation_summary="Cancel a pending or open order",
        operation_description="Answers 200 with the order, now `cancelled`, its reservation "
        "released. An order that is no longer pending or open (it settled, filled, expired or "
        "was cancelled first) is a 409 `not_pending`: exactly one of a cancel and a fill wins.",
        responses={
            200: openapi.Response("Cancelled.", TransactionSerializer),
            **ONE,
            409: error_response(
                409,
                "No longer pending or open.",
                example_of(NotPending(transaction_id=311, status="completed")),
            ),
        },
    )
    @swagger_auto_schema(
        method="patch",
        operation_id="transactions_replace",
        operation_summary="Replace an open order",
        operation_description="Changes an open order's `transaction_volume`, `limit_price`, "
        "`stop_price`, trail (`trail_price` or `trail_percent`) or `time_in_force` in one step: "
        "it keeps its id and its place in the user's order, `replaced_at` is set, and its "
        "reservation is re-checked against the buying power or shares it holds plus the free "
        "ones (409 `insufficient_buying_power` / `insufficient_shares`, nothing changed). "
        "An order that filled, expired or was cancelled first is a 409 `not_open`. A day "
        "order at or after its cut-off (`expires_at`) is expired by the PATCH (reservation "
        "released) and answered 409 `not_open` with status expired: it never becomes gtc or "
        "fills after its day. If the replaced order's condition holds at the latest close, it "
        "fills at that close (a buy's cash rounded up to the cent, a sell's down).",
        request_body=TransactionReplaceSerializer,
        responses={
            200: openapi.Response("Replaced.", TransactionSerializer),
            **errors(*BODY),
            **ONE,
            409: error_response(
                409,
                "No longer open (or past its cut-off: now expired), or the new terms need "
                "more than is free.",
                example_of(NotOpen(transaction_id=311, status="expired")),
            ),
        },
    )
    @action(
        detail=True,
        methods=["get", "delete", "patch"],
        url_path=r"(?P<transaction_id>[0-9]{1,18})",
        url_name="one",
    )
    def one(self, request, user_id=None, transaction_id=None):
        txn = self._transaction(request, user_id, transaction_id)
        if request.method == "DELETE":
            txn = transaction_cancel(transaction=txn)
        elif request.method == "PATCH":
            changes = TransactionReplaceSerializer(data=request.data, context={"order": txn})
            changes.is_valid(raise_exception=True)
            txn = transaction_replace(transaction=txn, changes=changes.validated_data)
        return Response(TransactionSerializer(txn).data)


class PortfolioView(generics.GenericAPIView):
    """`/users/{username}/portfolio/`: under the account's URL, but positions are ours."""

    serializer_class = PortfolioSerializer

    @swagger_auto_schema(
        operation_id="users_portfolio",
        operation_summary="Portfolio (owner or staff)",
        operation_description="Cash, open positions valued at each ticker's latest close, and "
        "equity = cash + market value. A position whose ticker has no quote has null values.",
        responses={
            200: openapi.Response("The portfolio.", PortfolioSerializer),
            **errors(*ACCOUNT),
            404: UNKNOWN_USERNAME,
        },
    )
    def get(self, request, username=None):
        user = account_for(caller=request.user, username=username)
        return Response(PortfolioSerializer(portfolio_for_user(user=user)).data)


# --- transfers --------------------------------------------------------------------------


class TransferView(generics.GenericAPIView):
    """`/users/{username}/transfers/`: the account's deposits and withdrawals."""

    serializer_class = TransferSerializer

    @swagger_auto_schema(
        operation_id="users_transfers_list",
        operation_summary="Deposits and withdrawals, newest first (owner or staff)",
        operation_description="The account's cash ledger: each transfer with the balance right "
        "after it. Paginated with `limit`/`offset`.",
        paginated=True,
        responses={
            200: openapi.Response("A page of transfers.", TransferSerializer(many=True)),
            **errors(400, *ACCOUNT),
            404: UNKNOWN_USERNAME,
        },
    )
    def get(self, request, username=None):
        user = account_for(caller=request.user, username=username)
        page = self.paginate_queryset(transfers_for_user(user=user))
        return self.get_paginated_response(TransferSerializer(page, many=True).data)

    @swagger_auto_schema(
        operation_id="users_transfers_create",
        operation_summary="Deposit or withdraw cash (owner or staff)",
        operation_description="A deposit adds `amount` to the balance; a withdrawal takes it "
        "from the buying power (balance - reserved: cash held by open buy orders stays), or is "
        "refused with 409 `insufficient_buying_power` and changes nothing. The ledger row and "
        "the new balance are written in one database transaction.",
        request_body=TransferCreateSerializer,
        manual_parameters=[idempotency_header("transfer", "deposit-2025-01-02-0001")],
        responses={
            201: openapi.Response("Transferred.", TransferSerializer),
            200: openapi.Response("Replay of an Idempotency-Key", TransferSerializer),
            **errors(*BODY, *ACCOUNT),
            404: UNKNOWN_USERNAME,
            409: error_response(
                409,
                "A withdrawal beyond the buying power.",
                example_of(InsufficientBuyingPower(needed="5000.00", available="4200.00")),
            ),
        },
    )
    def post(self, request, username=None):
        serializer = TransferCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        key = _idempotency_key(request)
        user = account_for(caller=request.user, username=username)
        if key is None:
            transfer, created = transfer_create(user=user, **serializer.validated_data), True
        else:
            transfer, created = transfer_create_once(
                user=user, idempotency_key=key, **serializer.validated_data
            )
        return Response(
            TransferSerializer(transfer).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )
