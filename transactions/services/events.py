"""Order events: what one states (the order and the account as the change leaves them), and
recording them in the outbox, in the transaction that made the change."""

from decimal import Decimal

from events.services import WithAccountState, events_record
from users.models import User

from ..models import Transaction


def _order(txn: Transaction) -> dict:
    return {name: getattr(txn, name) for name in Transaction.API_FIELDS}


def order_event_data(txn: Transaction, *, balance: Decimal, reserved: Decimal) -> dict:
    """An order event's data: the order as GET shows it and the account after it."""
    return {
        "order": _order(txn),
        "balance": balance,
        "reserved": reserved,
        "buying_power": balance - reserved,
    }


def _record(orders: list[tuple[list[str], Transaction]], *, account: User | None = None) -> None:
    """Record each `(event types, order)`, stating the order as it is now and its account as
    it stands once the events are numbered (WithAccountState): for changes that do not hold
    the account's lock while they record. Settlement, which holds it, states the balance it
    computed for each order itself. `account`: the orders' User, where the caller has it."""
    accounts = {txn.user_id: User(pk=txn.user_id) for _, txn in orders}
    if account is not None:
        accounts[account.pk] = account
    events_record(
        (accounts[txn.user_id], type_, WithAccountState(order=_order(txn)))
        for types, txn in orders
        for type_ in types
    )
