"""Transaction and portfolio reads."""

from datetime import datetime

from stockflow.money import ZERO, quantize_cash
from stocks.selectors import latest_closes
from users.models import User

from .models import Position, Transaction


def transactions_for_user(*, user_id: int, start: datetime | None, end: datetime | None):
    """A user's transactions newest first, optionally within [start, end]."""
    txns = Transaction.objects.filter(user_id=user_id)
    if start is not None:
        txns = txns.filter(timestamp__gte=start)
    if end is not None:
        txns = txns.filter(timestamp__lte=end)
    return txns.order_by("-timestamp", "-id")


def portfolio_for_user(*, user: User) -> dict:
    """Cash, open positions valued at the latest close, and equity (cash + market value)."""
    positions = list(Position.objects.filter(user=user, quantity__gt=0).order_by("ticker"))
    closes = latest_closes(tickers=[p.ticker for p in positions])
    rows = []
    market_total = ZERO
    for position in positions:
        last_price = closes.get(position.ticker)  # None only if an operator deleted its quotes
        cost = quantize_cash(position.average_cost * position.quantity)
        market_value = quantize_cash(last_price * position.quantity) if last_price else None
        market_total += market_value or ZERO
        rows.append(
            {
                "ticker": position.ticker,
                "quantity": position.quantity,
                "average_cost": position.average_cost,
                "last_price": last_price,
                "market_value": market_value,
                "unrealized_pnl": market_value - cost if market_value is not None else None,
            }
        )
    return {
        "username": user.username,
        "cash": user.balance,
        "positions": rows,
        "equity": user.balance + market_total,
    }
