"""Cash transfers: deposits and withdrawals, at most once per idempotency key.

Deposits and withdrawals (`transfer_create`) take the user's lock too, and write their
ledger row in the same database transaction as the balance they change.
"""

import logging
from decimal import Decimal

from django.db.transaction import atomic

from events.services import events_record
from stockflow.money import MAX_BALANCE, MAX_TRANSFER_AMOUNT, ZERO, cash_exact, is_whole_cents
from users.models import User

from ..errors import BalanceLimitExceeded, InsufficientBuyingPower, InvalidTransferAmount
from ..models import Transfer, TransferDirection
from .idempotency import _create_once, _row_for_key

# The package's one logger: log lines keep `logger=transactions.services`.
logger = logging.getLogger(__package__)


def transfer_amount_check(*, amount: Decimal) -> None:
    """Refuse (InvalidTransferAmount) an amount that is not in cents, > 0 and below
    MAX_TRANSFER_AMOUNT. Every path that moves cash in or out calls it: API, admin, service."""
    # Never rounded: an amount in fractions of a cent is refused, so no transfer moves cash
    # that was not asked for.
    if not ZERO < amount < MAX_TRANSFER_AMOUNT or not is_whole_cents(amount):
        raise InvalidTransferAmount(limit=MAX_TRANSFER_AMOUNT)


def transfer_create(
    *, user: User, direction: str, amount: Decimal, idempotency_key: str | None = None
) -> Transfer:
    """Deposit or withdraw cash. The ledger row and the new balance commit together, under the
    user's lock, so initial balance + deposits - withdrawals - completed buys + completed
    sells = balance at every commit.

    A withdrawal may take only the buying power (balance - reserved): cash held by open buy
    orders stays where it is. A deposit may not take the balance to MAX_BALANCE.
    """
    transfer_amount_check(amount=amount)
    amount = cash_exact(amount)  # 5 and 5.000 are stored and logged as 5.00
    with atomic():
        account = (
            User.objects.select_for_update(no_key=True)
            .only("balance", "reserved", "username")
            .get(pk=user.pk)
        )
        if direction == TransferDirection.DEPOSIT:
            balance = account.balance + amount
            if balance >= MAX_BALANCE:
                raise BalanceLimitExceeded(limit=MAX_BALANCE)
        elif direction == TransferDirection.WITHDRAWAL:
            if amount > account.buying_power:
                raise InsufficientBuyingPower(needed=amount, available=account.buying_power)
            balance = account.balance - amount
        else:
            raise ValueError(f"unknown transfer direction {direction!r}")
        User.objects.filter(pk=account.pk).update(balance=balance)
        transfer = Transfer.objects.create(
            user=user,
            direction=direction,
            amount=amount,
            balance_after=balance,
            idempotency_key=idempotency_key,
        )
        events_record([(account, "transfer", _transfer_event_data(transfer, account))])
    logger.info(
        "transfer_created transfer_id=%s user_id=%s direction=%s amount=%s balance=%s",
        transfer.pk,
        account.pk,
        direction,
        amount,
        balance,
    )
    return transfer


def _transfer_event_data(transfer: Transfer, account: User) -> dict:
    """A `transfer` event's data: the transfer as the API shows it and the account after it."""
    return {
        "transfer": {
            "id": transfer.pk,
            "user_id": account.pk,
            "username": account.username,
            "direction": transfer.direction,
            "amount": transfer.amount,
            "balance_after": transfer.balance_after,
            "created_at": transfer.created_at,
        },
        "balance": transfer.balance_after,
        "reserved": account.reserved,
        "buying_power": transfer.balance_after - account.reserved,
    }


def _transfer_for_key(*, user: User, idempotency_key: str) -> Transfer | None:
    return _row_for_key(
        Transfer.objects.filter(user=user), idempotency_key=idempotency_key, created="created_at"
    )


def transfer_create_once(*, user: User, idempotency_key: str, **transfer) -> tuple[Transfer, bool]:
    """Transfer unless this key already made a transfer; return it and whether it is new."""
    return _create_once(
        lambda: transfer_create(user=user, idempotency_key=idempotency_key, **transfer),
        lambda: _transfer_for_key(user=user, idempotency_key=idempotency_key),
    )
