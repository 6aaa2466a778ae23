"""What follows the trading app's events, registered on the event bus by TransactionsConfig.

Once the change commits (COMMIT, in the process that made it): the account's cached reads
are dropped, orders that can fill are handed to settlement, new quotes to the order check.
When relayed (RELAY, in a worker, at least once, in `seq` order): each event goes to the
account's /ws/orders/ streams.
"""

from events.bus import COMMIT, RELAY, subscribe
from stockflow.cache import bump, user_namespace
from stockflow.events import orders_group, publish_and_wait

from .models import Transaction, TransactionStatus
from .tasks import request_order_check, request_settlement

ORDER_EVENTS = ("submitted", "triggered", "completed", "failed", "cancelled", "expired", "replaced")
PENDING, OPEN = TransactionStatus.PENDING.value, TransactionStatus.OPEN.value


def _status(event) -> str:
    return event.data["order"]["status"]


@subscribe(*ORDER_EVENTS, "transfer", on=RELAY)
def publish_to_orders_streams(events) -> None:
    publish_and_wait([(orders_group(event.account_id), event.as_message()) for event in events])


@subscribe(*ORDER_EVENTS, "transfer", on=COMMIT)
def forget_cached_accounts(events) -> None:
    """Whatever moved cash, shares or a reservation; not a market order's submission (it
    reserves nothing) nor a trigger (it moves nothing)."""
    changed = {
        event.account.username
        for event in events
        if event.type != "triggered"
        and not (event.type == "submitted" and _status(event) == PENDING)
    }
    for username in changed:
        bump(user_namespace(username))


@subscribe("submitted", "replaced", on=COMMIT)
def settle_what_can_fill(events) -> None:
    """A market order settles at once; an open order does when its condition held at the
    close it was submitted or replaced at (marked ready to fill: one query for them all)."""
    pending = {event.account_id for event in events if _status(event) == PENDING}
    opened = {event.account_id for event in events if _status(event) == OPEN} - pending
    ready = set()
    if opened:
        ready = set(
            Transaction.objects.filter(user_id__in=opened, status=OPEN, ready_price__isnull=False)
            .values_list("user_id", flat=True)
            .distinct()
        )
    request_settlement(pending | ready)


@subscribe("quote", on=COMMIT)
def check_orders_reached_by_quotes(events) -> None:
    request_order_check({event.data["quote"]["ticker"] for event in events})
