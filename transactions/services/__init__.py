"""Every rule about money, one module per concern; the names views, tasks, the admin and
commands call are importable from here.

- `submission`: storing an order (market orders priced at the latest close, others reserved);
- `lifecycle`: cancel, replace and expiry of a stored order;
- `conditions`: arming an open order, how a close acts on it, what it reserves;
- `reservations`: the cash or shares an open order holds;
- `settlement`: filling, failing and expiring a user's ready orders;
- `triggers`: what a stored quote does to its ticker's open orders (trailing stops included);
- `transfers`: deposits and withdrawals;
- `sweepers`: what lost tasks and due expiries left for settlement and order checks;
- `events` and `idempotency`: what the services above share.

Services change state and record events (the `events` app's outbox) in the same database
transaction; they send no task and publish nothing. What follows an event (cache
invalidation, settlement, live updates) is a subscriber: `transactions.subscribers`.

Row locks follow one order: the user's row, then transactions in id order, then positions in
ticker order. A service takes only the locks it needs, in that order (see `settlement`).
"""

from .idempotency import IDEMPOTENCY_WINDOW
from .lifecycle import transaction_cancel, transaction_replace
from .settlement import settlement_mark, transactions_settle_for_user
from .submission import transaction_submit, transaction_submit_once
from .sweepers import orders_due_to_expire, transactions_stale
from .transfers import transfer_amount_check, transfer_create, transfer_create_once
from .triggers import orders_check_for_ticker, triggered_orders

__all__ = [
    "IDEMPOTENCY_WINDOW",
    "orders_check_for_ticker",
    "orders_due_to_expire",
    "settlement_mark",
    "transaction_cancel",
    "transaction_replace",
    "transaction_submit",
    "transaction_submit_once",
    "transactions_settle_for_user",
    "transactions_stale",
    "transfer_amount_check",
    "transfer_create",
    "transfer_create_once",
    "triggered_orders",
]
