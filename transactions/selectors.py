"""Transaction and portfolio reads; valuing a portfolio is a pure function of what is read."""

from datetime import datetime
from decimal import Decimal

from stockflow.filters import within
from stockflow.money import ZERO, cash_to_pay, cash_to_receive
from stocks.selectors import latest_closes
from users.models import User

from .models import Position, Transaction, Transfer


def transactions_for_user(*, user_id: int, start: datetime | None, end: datetime | None):
    """A user's transactions newest first, optionally within [start, end]."""
    txns = within(Transaction.objects.filter(user_id=user_id), start=start, end=end)
    return txns.order_by("-timestamp", "-id")


def portfolio_value(
    *, cash: Decimal, positions: list[Position], closes: dict[str, Decimal]
) -> dict:
    """Value open positions at their latest close: market value and P&L in cents, equity.

    Rounded as trades are: the market value is what selling at the close would pay (down),
    the cost what the shares were booked at (up), so the figures never flatter the account.
    """
    rows = []
    market_total = ZERO
    for position in positions:
        last_price = closes.get(position.ticker)  # None only if an operator deleted its quotes
        cost = cash_to_pay(position.average_cost * position.quantity)
        market_value = cash_to_receive(last_price * position.quantity) if last_price else None
        market_total += market_value or ZERO
        rows.append(
            {
                "ticker": position.ticker,
                "quantity": position.quantity,
                "reserved": position.reserved,
                "available": position.available,
                "average_cost": position.average_cost,
                "last_price": last_price,
                "market_value": market_value,
                "unrealized_pnl": market_value - cost if market_value is not None else None,
                "realized_pnl": position.realized_pnl,
            }
        )
    return {"cash": cash, "positions": rows, "equity": cash + market_total}


def portfolio_for_user(*, user: User) -> dict:
    """The user's open positions valued at their tickers' latest closes, and the cash."""
    user.load_money()
    every = list(Position.objects.filter(user=user).order_by("ticker"))
    positions = [p for p in every if p.quantity > 0]
    closes = latest_closes(tickers=[p.ticker for p in positions])
    return {
        "username": user.username,
        "balance": user.balance,
        "reserved": user.reserved,
        "buying_power": user.buying_power,
        "realized_pnl": sum((p.realized_pnl for p in every), ZERO),
        **portfolio_value(cash=user.balance, positions=positions, closes=closes),
    }


def transfers_for_user(*, user: User):
    """A user's deposits and withdrawals, newest first (the `transfer_user_created_desc` index)."""
    return Transfer.objects.filter(user=user).select_related("user").order_by("-created_at", "-id")
