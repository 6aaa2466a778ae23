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

from .errors import InvalidIdempotencyKey, NotPending, UnknownTransaction
from .models import Transaction
from .selectors import portfolio_for_user, transactions_for_user
from .serializers import (
    PortfolioSerializer,
    TransactionFilterSerializer,
    TransactionSerializer,
    TransactionSubmitSerializer,
)
from .services import transaction_cancel, transaction_submit, transaction_submit_once

IDEMPOTENCY_KEY = re.compile(r"[\x20-\x7e]{1,64}")
IDEMPOTENCY_HEADER = openapi.Parameter(
    "Idempotency-Key",
    openapi.IN_HEADER,
    "Makes retries safe: the same key from the same user within 24 hours returns the "
    "transaction it first created (200) and creates nothing. 1-64 printable ASCII characters.",
    type=openapi.TYPE_STRING,
    pattern=rf"^{IDEMPOTENCY_KEY.pattern}$",
    required=False,
    **{"x-example": "order-2025-01-02-0001"},
)
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
        operation_summary="Submit a market order",
        operation_description="Priced now from the ticker's latest close, stored `pending`, and "
        "settled asynchronously by a worker. Omit `user_id` to trade on your own account.",
        request_body=TransactionSubmitSerializer,
        manual_parameters=[IDEMPOTENCY_HEADER],
        responses={
            201: openapi.Response("Submitted, `pending`.", TransactionSerializer),
            200: openapi.Response("Replay of an Idempotency-Key", TransactionSerializer),
            **errors(*BODY, *ACCOUNT),
            403: NOT_YOURS,
            404: error_response(
                404,
                "Unknown user or ticker.",
                {"detail": "No quotes for ticker 'ZZZZ'.", "code": "unknown_ticker"},
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
        operation_summary="Cancel a pending transaction",
        operation_description="Answers 200 with the transaction, now `cancelled`. A transaction "
        "that is no longer pending (settled or cancelled already) is a 409.",
        responses={
            200: openapi.Response("Cancelled.", TransactionSerializer),
            **ONE,
            409: error_response(
                409,
                "No longer pending.",
                example_of(NotPending(transaction_id=311, status="completed")),
            ),
        },
    )
    @action(
        detail=True,
        methods=["get", "delete"],
        url_path=r"(?P<transaction_id>[0-9]{1,18})",
        url_name="one",
    )
    def one(self, request, user_id=None, transaction_id=None):
        txn = self._transaction(request, user_id, transaction_id)
        if request.method == "DELETE":
            txn = transaction_cancel(transaction=txn)
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
