"""Order events: what WebSocket clients receive, and the one way a service that changed an
order reads the account, drops the user's cached reads and publishes after the commit."""

from decimal import Decimal

from stockflow.cache import invalidate_on_commit, user_namespace
from stockflow.events import orders_group, publish_many_on_commit
from users.models import User

from ..models import Transaction


def order_event(event: str, txn: Transaction, *, balance: Decimal, reserved: Decimal) -> dict:
    """An order event as WebSocket clients receive it: the order and the account after it."""
    return {
        "event": event,
        "order": {name: getattr(txn, name) for name in Transaction.API_FIELDS},
        "balance": balance,
        "reserved": reserved,
        "buying_power": balance - reserved,
    }


def _events(events, txn: Transaction, *, balance: Decimal, reserved: Decimal) -> list[tuple]:
    """`(group, event)` pairs for `publish_many_on_commit`: the order's state as it commits."""
    group = orders_group(txn.user_id)
    return [(group, order_event(e, txn, balance=balance, reserved=reserved)) for e in events]


def _publish(events, txn: Transaction, *, balance: Decimal, reserved: Decimal) -> None:
    """Publish one order's events after the commit, in one go (one connection to the layer)."""
    publish_many_on_commit(_events(events, txn, balance=balance, reserved=reserved))


def _account(user_id: int) -> User:
    return User.objects.only("balance", "reserved", "username").get(pk=user_id)


def _reload_invalidate_publish(events, txn: Transaction, *, invalidate: bool = True) -> None:
    """Read the account as `txn` leaves it, drop the user's cached reads once this commits,
    and publish the order's events with that account. `invalidate=False` only where nothing
    cached changed (an ioc order that ended at submission, having reserved nothing)."""
    account = _account(txn.user_id)
    if invalidate:
        invalidate_on_commit(user_namespace(account.username))
    _publish(events, txn, balance=account.balance, reserved=account.reserved)
