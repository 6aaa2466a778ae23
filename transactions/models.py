"""Transactions (orders) and positions; CHECK constraints back the money rules.

An order that waits for its price is `open`: it holds a reservation (cash on the user for
a buy, shares on the position for a sell) until it fills, is cancelled, expires or is
replaced. To find the open orders a new close triggers with one indexed query, each open
order states the one comparison that makes it act next, in one of two columns: `rises_to`
(it acts when a close >= rises_to) or `falls_to` (when a close <= falls_to). Two columns,
not a price and a direction, so that PostgreSQL's statistics of each describe only the
orders it applies to: buy limits and sell stops wait below the market, sell limits and buy
stops above it, and a single price column would mix the two. For the same reason a trailing
stop keeps its anchor (its best close so far) in `trail_high` (a sell: it moves when a close is
above it) or `trail_low` (a buy: when a close is below it), and one UPDATE per quote moves the
stops whose anchor the close improves with a range scan of each.
"""

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from stockflow.money import (
    CASH_DECIMAL_PLACES,
    CASH_MAX_DIGITS,
    PRICE_DECIMAL_PLACES,
    PRICE_MAX_DIGITS,
)
from stockflow.text import TICKER_MAX_LENGTH

PRICE = {"max_digits": PRICE_MAX_DIGITS, "decimal_places": PRICE_DECIMAL_PLACES}
CASH = {"max_digits": CASH_MAX_DIGITS, "decimal_places": CASH_DECIMAL_PLACES}


class TransactionType(models.TextChoices):
    BUY = "BUY", "Buy"
    SELL = "SELL", "Sell"


class OrderType(models.TextChoices):
    MARKET = "market", "Market"
    LIMIT = "limit", "Limit"
    STOP = "stop", "Stop"
    STOP_LIMIT = "stop_limit", "Stop-limit"
    TRAILING_STOP = "trailing_stop", "Trailing stop"


class TimeInForce(models.TextChoices):
    DAY = "day", "Day"
    GTC = "gtc", "Good till cancelled"
    IOC = "ioc", "Immediate or cancel"


class TransactionStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    OPEN = "open", "Open"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    EXPIRED = "expired", "Expired"


class FailureReason(models.TextChoices):
    INSUFFICIENT_FUNDS = "insufficient_funds", "Insufficient funds"
    INSUFFICIENT_SHARES = "insufficient_shares", "Insufficient shares"
    EXPIRED = "expired", "Expired"


class Transaction(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="transactions"
    )
    ticker = models.CharField(max_length=TICKER_MAX_LENGTH)
    transaction_type = models.CharField(max_length=4, choices=TransactionType.choices)
    transaction_volume = models.BigIntegerField()
    # Filled: the fill price. Open: what the order reserves (a buy) or asks (a sell) per share.
    unit_price = models.DecimalField(**PRICE)
    # unit_price x volume in cents; an open buy's reservation.
    transaction_price = models.DecimalField(**CASH)
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

    order_type = models.CharField(max_length=13, choices=OrderType.choices, default="market")
    limit_price = models.DecimalField(**PRICE, null=True, blank=True)
    # A trailing stop's stop moves with the best close: this is where it stands now.
    stop_price = models.DecimalField(**PRICE, null=True, blank=True)
    trail_price = models.DecimalField(**PRICE, null=True, blank=True)
    trail_percent = models.DecimalField(max_digits=6, decimal_places=4, null=True, blank=True)
    # NULL, not "": a market order has none.
    time_in_force = models.CharField(  # noqa: DJ001
        max_length=3, choices=TimeInForce.choices, null=True, blank=True
    )
    triggered_at = models.DateTimeField(null=True, blank=True)
    filled_price = models.DecimalField(**PRICE, null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    replaced_at = models.DateTimeField(null=True, blank=True)
    # Internal: a trailing stop's best close since submission, its anchor (`trail_anchor`),
    # in its side's column: a sell's highest close (it moves when a close is above it), a
    # buy's lowest (when below). See the module docstring for why two columns.
    trail_high = models.DecimalField(**PRICE, null=True, blank=True)
    trail_low = models.DecimalField(**PRICE, null=True, blank=True)
    # Internal: the comparison that makes an open order act (see the module docstring).
    rises_to = models.DecimalField(**PRICE, null=True, blank=True)
    falls_to = models.DecimalField(**PRICE, null=True, blank=True)
    # Internal: the close that made this open order fillable; settlement fills it at that.
    ready_price = models.DecimalField(**PRICE, null=True, blank=True)
    ready_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(transaction_volume__gte=1), name="txn_volume_min_1"),
            models.CheckConstraint(condition=Q(unit_price__gt=0), name="txn_unit_price_positive"),
            models.CheckConstraint(
                condition=Q(transaction_price__gte=0), name="txn_price_non_negative"
            ),
            models.CheckConstraint(
                condition=(Q(limit_price__isnull=True) | Q(limit_price__gt=0))
                & (Q(stop_price__isnull=True) | Q(stop_price__gt=0))
                & (Q(trail_price__isnull=True) | Q(trail_price__gt=0))
                & (Q(trail_percent__isnull=True) | Q(trail_percent__gt=0, trail_percent__lt=100)),
                name="txn_order_prices_positive",
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
            # The open orders a close of `ticker` triggers: a range scan of each.
            models.Index(
                fields=["ticker", "rises_to"],
                condition=Q(status="open", ready_price__isnull=True, rises_to__isnull=False),
                name="txn_open_rises_to",
            ),
            models.Index(
                fields=["ticker", "falls_to"],
                condition=Q(status="open", ready_price__isnull=True, falls_to__isnull=False),
                name="txn_open_falls_to",
            ),
            # The trailing stops a close of `ticker` moves: a range scan of each.
            models.Index(
                fields=["ticker", "trail_high"],
                condition=Q(status="open", ready_price__isnull=True, trail_high__isnull=False),
                name="txn_open_trail_high",
            ),
            models.Index(
                fields=["ticker", "trail_low"],
                condition=Q(status="open", ready_price__isnull=True, trail_low__isnull=False),
                name="txn_open_trail_low",
            ),
            # Open orders to settle: ready to fill, or past their expiry.
            models.Index(
                fields=["user", "id"],
                condition=Q(status="open", ready_price__isnull=False),
                name="txn_ready_by_user",
            ),
            models.Index(
                fields=["expires_at"],
                condition=Q(status="open", expires_at__isnull=False),
                name="txn_open_expiry",
            ),
        ]

    # What the API (and every order event) shows of a transaction, in this order.
    API_FIELDS = (
        "id",
        "user_id",
        "ticker",
        "transaction_type",
        "transaction_volume",
        "unit_price",
        "transaction_price",
        "status",
        "failure_reason",
        "timestamp",
        "settled_at",
        "order_type",
        "limit_price",
        "stop_price",
        "trail_price",
        "trail_percent",
        "time_in_force",
        "triggered_at",
        "filled_price",
        "expires_at",
        "replaced_at",
    )

    def __str__(self) -> str:
        return f"#{self.pk} {self.transaction_type} {self.transaction_volume} {self.ticker}"

    @property
    def is_buy(self) -> bool:
        return self.transaction_type == TransactionType.BUY

    @property
    def trail_anchor(self) -> Decimal | None:
        """A trailing stop's best close since submission: trail_low for a buy, else trail_high."""
        return self.trail_low if self.is_buy else self.trail_high

    @trail_anchor.setter
    def trail_anchor(self, close: Decimal | None) -> None:
        self.trail_high, self.trail_low = (None, close) if self.is_buy else (close, None)


class Position(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="positions"
    )
    ticker = models.CharField(max_length=TICKER_MAX_LENGTH)
    quantity = models.BigIntegerField(default=0)
    # Shares promised to open sell orders: the sum of their volumes, never above quantity.
    reserved = models.BigIntegerField(default=0)
    average_cost = models.DecimalField(**PRICE, default=0)
    # Sells' proceeds minus the average cost of the shares sold, in cents, since the start.
    realized_pnl = models.DecimalField(**CASH, default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "ticker"], name="position_unique_user_ticker"),
            models.CheckConstraint(condition=Q(quantity__gte=0), name="position_quantity_non_neg"),
            models.CheckConstraint(
                condition=Q(reserved__gte=0, reserved__lte=F("quantity")),
                name="position_reserved_within_quantity",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user_id}:{self.ticker} x{self.quantity}"

    @property
    def available(self) -> int:
        return self.quantity - self.reserved


# --- transfers --------------------------------------------------------------------------


class TransferDirection(models.TextChoices):
    DEPOSIT = "deposit", "Deposit"
    WITHDRAWAL = "withdrawal", "Withdrawal"


class Transfer(models.Model):
    """A deposit or withdrawal of cash: the account's ledger row, written in the same database
    transaction as the balance it changes, so balances add up from the rows alone."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="transfers"
    )
    direction = models.CharField(max_length=10, choices=TransferDirection.choices)
    amount = models.DecimalField(**CASH)
    # The balance right after this transfer: the ledger reads as a statement.
    balance_after = models.DecimalField(**CASH)
    created_at = models.DateTimeField(default=timezone.now)
    # The client's Idempotency-Key; unique per user while set (released after 24 hours).
    idempotency_key = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="transfer_amount_positive"),
            models.CheckConstraint(
                condition=Q(balance_after__gte=0), name="transfer_balance_after_non_negative"
            ),
            models.CheckConstraint(
                condition=Q(direction__in=TransferDirection.values), name="transfer_direction_valid"
            ),
            models.UniqueConstraint(
                fields=["user", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="transfer_unique_user_idempotency_key",
            ),
        ]
        indexes = [
            models.Index(fields=["user", "-created_at", "-id"], name="transfer_user_created_desc")
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.direction} {self.amount}"
