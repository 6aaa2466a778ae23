"""Transactions (orders) and positions; CHECK constraints back the money rules."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from stockflow.money import (
    CASH_DECIMAL_PLACES,
    CASH_MAX_DIGITS,
    PRICE_DECIMAL_PLACES,
    PRICE_MAX_DIGITS,
)
from stockflow.text import TICKER_MAX_LENGTH


class TransactionType(models.TextChoices):
    BUY = "BUY", "Buy"
    SELL = "SELL", "Sell"


class TransactionStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class FailureReason(models.TextChoices):
    INSUFFICIENT_FUNDS = "insufficient_funds", "Insufficient funds"
    INSUFFICIENT_SHARES = "insufficient_shares", "Insufficient shares"


class Transaction(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="transactions"
    )
    ticker = models.CharField(max_length=TICKER_MAX_LENGTH)
    transaction_type = models.CharField(max_length=4, choices=TransactionType.choices)
    transaction_volume = models.BigIntegerField()
    unit_price = models.DecimalField(
        max_digits=PRICE_MAX_DIGITS, decimal_places=PRICE_DECIMAL_PLACES
    )
    transaction_price = models.DecimalField(
        max_digits=CASH_MAX_DIGITS, decimal_places=CASH_DECIMAL_PLACES
    )
    status = models.CharField(
        max_length=9, choices=TransactionStatus.choices, default=TransactionStatus.PENDING
    )
    # NULL, not "": the API promises `failure_reason: null` until something fails.
    failure_reason = models.CharField(  # noqa: DJ001
        max_length=32, choices=FailureReason.choices, null=True, blank=True
    )
    timestamp = models.DateTimeField(default=timezone.now)
    settled_at = models.DateTimeField(null=True, blank=True)
    # The client's Idempotency-Key; unique per user while set (released after 24 hours).
    idempotency_key = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(transaction_volume__gte=1), name="txn_volume_min_1"),
            models.CheckConstraint(condition=Q(unit_price__gt=0), name="txn_unit_price_positive"),
            models.CheckConstraint(
                condition=Q(transaction_price__gte=0), name="txn_price_non_negative"
            ),
            # The database, not a check-then-insert, makes concurrent retries create one row.
            models.UniqueConstraint(
                fields=["user", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="txn_unique_user_idempotency_key",
            ),
        ]
        indexes = [
            models.Index(fields=["user", "-timestamp"], name="txn_user_ts_desc"),
            models.Index(
                fields=["user", "id"],
                condition=Q(status="pending"),
                name="txn_pending_by_user",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.transaction_type} {self.transaction_volume} {self.ticker}"


class Position(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="positions"
    )
    ticker = models.CharField(max_length=TICKER_MAX_LENGTH)
    quantity = models.BigIntegerField(default=0)
    average_cost = models.DecimalField(
        max_digits=PRICE_MAX_DIGITS, decimal_places=PRICE_DECIMAL_PLACES, default=0
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "ticker"], name="position_unique_user_ticker"),
            models.CheckConstraint(condition=Q(quantity__gte=0), name="position_quantity_non_neg"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id}:{self.ticker} x{self.quantity}"
