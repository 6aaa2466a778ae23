"""`/events/`: an account's events after a `seq`, oldest first, to resume from."""

from drf_yasg import openapi
from drf_yasg.utils import swagger_auto_schema
from rest_framework import generics

from stockflow.pagination import WHOLE_NUMBER
from stockflow.schema import ACCOUNT, error_response, errors, example_of
from users.errors import NotYourAccount, UnknownUser
from users.models import User
from users.selectors import account_for

from .errors import EventsPruned
from .selectors import events_after, since_check
from .serializers import EventQuerySerializer, EventSerializer


def _account(caller: User, name: str | None) -> User:
    """The caller's account, or (staff) the one `user` names: by id when an account has that
    id, else by username."""
    if name is None:
        return caller
    if WHOLE_NUMBER.fullmatch(name) and User.objects.filter(pk=int(name)).exists():
        return account_for(caller=caller, user_id=int(name))
    return account_for(caller=caller, username=name)


class EventListView(generics.GenericAPIView):
    serializer_class = EventSerializer

    @swagger_auto_schema(
        operation_id="events_list",
        operation_summary="The account's events after a seq, oldest first (owner; staff: any)",
        operation_description=(
            "Everything that happened to the account, as the outbox recorded it in the same "
            "database transaction as the change: order events (`submitted`, `triggered`, "
            "`completed`, `failed`, `cancelled`, `expired`, `replaced`, with the order and the "
            "account after it) and `transfer` (a deposit or withdrawal). `seq` numbers an "
            "account's events 1, 2, 3, ... with no gap; pass the last one you saw as `since` "
            "to get what you missed (the same events `/ws/orders/?since=` replays). Kept "
            "`EVENTS_RETENTION_DAYS` (30) days. Paginated with `limit`/`offset`."
        ),
        query_serializer=EventQuerySerializer,
        paginated=True,
        responses={
            200: openapi.Response("A page of events.", EventSerializer(many=True)),
            **errors(400, *ACCOUNT),
            403: error_response(403, "Another user's account.", example_of(NotYourAccount())),
            404: error_response(404, "No such user.", example_of(UnknownUser(username="bob"))),
            410: error_response(
                410,
                "Events after `since` were pruned.",
                example_of(EventsPruned(pruned_through=1200, days=30)),
            ),
        },
    )
    def get(self, request):
        query = EventQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        account = _account(request.user, query.validated_data.get("user"))
        since = query.validated_data.get("since")
        if since is not None:
            since_check(account_id=account.pk, since=since)
        page = self.paginate_queryset(events_after(account_id=account.pk, since=since or 0))
        return self.get_paginated_response(EventSerializer(page, many=True).data)
