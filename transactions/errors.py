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
