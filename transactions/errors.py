"""Errors of the orders context."""

from stockflow.errors import Conflict, InvalidInput, NotFound


class UnknownTransaction(NotFound):
    code = "unknown_transaction"
    message = "No transaction {transaction_id} for user {user_id}."


class NotPending(Conflict):
    code = "not_pending"
    message = (
        "Transaction {transaction_id} is already {status}; "
        "only pending transactions can be cancelled."
    )


class InvalidIdempotencyKey(InvalidInput):
    code = "invalid_idempotency_key"
    message = "Idempotency-Key must be 1-64 printable ASCII characters."


class NotOpen(Conflict):
    code = "not_open"
    message = "Transaction {transaction_id} is already {status}; only open orders can be replaced."


class InsufficientBuyingPower(Conflict):
    code = "insufficient_buying_power"
    message = "This needs {needed} of buying power; {available} is available."


class InsufficientShares(Conflict):
    code = "insufficient_shares"
    message = "This needs {needed} unreserved {ticker} shares; {available} are available."


class InvalidTransferAmount(InvalidInput):
    code = "invalid_amount"
    field = "amount"
    message = "Enter an amount greater than 0 and less than {limit}, with at most 2 decimal places."


class BalanceLimitExceeded(InvalidInput):
    code = "balance_limit_exceeded"
    field = "amount"
    message = "This deposit would take the balance to {limit} or more; a balance stays below it."


class TrailTooWide(InvalidInput):
    code = "trail_too_wide"
    field = "trail_price"
    message = "A trailing sell's trail must be less than the current close, {close}."
