"""Transaction and portfolio reads."""

from datetime import datetime

from stocks.selectors import latest_closes
from users.models import User

from .models import Position, Transaction
from .services import portfolio_value


def transactions_for_user(*, user_id: int, start: datetime | None, end: datetime | None):
    """A user's transactions newest first, optionally within [start, end]."""
    txns = Transaction.objects.filter(user_id=user_id)
    if start is not None:
        txns = txns.filter(timestamp__gte=start)
    if end is not None:
        txns = txns.filter(timestamp__lte=end)
    return txns.order_by("-timestamp", "-id")


def portfolio_for_user(*, user: User) -> dict:
    """The user's open positions and their latest closes, valued by the money rules."""
    positions = list(Position.objects.filter(user=user, quantity__gt=0).order_by("ticker"))
    closes = latest_closes(tickers=[p.ticker for p in positions])
    return {
        "username": user.username,
        **portfolio_value(cash=user.balance, positions=positions, closes=closes),
    }
