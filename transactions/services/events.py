"""Order events: what one states (the order and the account as the change leaves them), and
recording them in the outbox, in the transaction that made the change."""

from decimal import Decimal

from events.services import events_record
from users.models import User

from ..models import Transaction


def order_event_data(txn: Transaction, *, balance: Decimal, reserved: Decimal) -> dict:
    """An order event's data: the order as GET shows it and the account after it."""
    return {
        "order": {name: getattr(txn, name) for name in Transaction.API_FIELDS},
        "balance": balance,
        "reserved": reserved,
        "buying_power": balance - reserved,
    }


def order_event(event: str, txn: Transaction, *, balance: Decimal, reserved: Decimal) -> dict:
    """An order event as the streams send it, before the outbox numbers it."""
    return {"event": event, **order_event_data(txn, balance=balance, reserved=reserved)}


def _record(orders: list[tuple[list[str], Transaction]]) -> None:
    """Record each `(event types, order)` with its account as it stands once the events are
    numbered: one read for all the accounts, after every change numbered before these (see
    events_record), so an event never states a balance older than an earlier event's.

    For changes that do not hold the account's lock while they record: submissions, cancel,
    replace and expiry, triggers. Settlement states the balance it holds locked itself.
    """
    placeholders = {txn.user_id: User(pk=txn.user_id) for _, txn in orders}
    read: dict[int, User] = {}

    def account_of(user_id: int) -> User:
        if not read:
            read.update(User.objects.only("balance", "reserved", "username").in_bulk(placeholders))
            for pk, account in read.items():  # the COMMIT handlers invalidate by username
                placeholders[pk].username = account.username
        return read[user_id]

    def data_of(txn: Transaction):
        order = {name: getattr(txn, name) for name in Transaction.API_FIELDS}  # as it is now

        def data() -> dict:
            account = account_of(txn.user_id)
            return {
                "order": order,
                "balance": account.balance,
                "reserved": account.reserved,
                "buying_power": account.balance - account.reserved,
            }

        return data

    events_record(
        (placeholders[txn.user_id], type_, data_of(txn)) for types, txn in orders for type_ in types
    )
