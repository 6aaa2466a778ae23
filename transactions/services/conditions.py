"""An open order's condition: arming it (`rises_to`/`falls_to`, a trailing stop's stop), how a
close acts on it, what it reserves or asks, and when it is past its cut-off."""

from datetime import datetime, time, timedelta
from decimal import Decimal

from django.conf import settings

from stockflow.money import cash_to_pay, cash_to_receive, price_to_pay, quantize_price

from ..errors import TrailTooWide
from ..models import OrderType, Transaction

STOPS = (OrderType.STOP, OrderType.TRAILING_STOP)
HUNDRED = Decimal(100)


def _trailing_stop(order: Transaction) -> Decimal:
    """Sell: best (highest) close minus the trail; buy: best (lowest) close plus the trail."""
    anchor = order.trail_anchor
    if order.trail_price is not None:
        trail = order.trail_price
    else:
        trail = anchor * order.trail_percent / HUNDRED
    return quantize_price(anchor + trail if order.is_buy else anchor - trail)


def _arm(order: Transaction) -> None:
    """State the one comparison that makes this open order act next (`rises_to`/`falls_to`)."""
    if order.order_type == OrderType.TRAILING_STOP:
        order.stop_price = _trailing_stop(order)
    acts_as_limit = order.order_type == OrderType.LIMIT or (
        order.order_type == OrderType.STOP_LIMIT and order.triggered_at is not None
    )
    if acts_as_limit:  # buy when close <= limit, sell when close >= limit
        price, rises = order.limit_price, not order.is_buy
    else:  # a stop: buy when close >= stop, sell when close <= stop
        price, rises = order.stop_price, order.is_buy
    order.rises_to, order.falls_to = (price, None) if rises else (None, price)


def _refuse_a_trail_as_wide_as_the_price(order: Transaction, *, close: Decimal) -> None:
    """Refuse (TrailTooWide) an armed order whose stop is at or below zero: a trailing stop
    whose trail is as wide as the price it started from. Submit and replace both ask."""
    if order.stop_price is not None and order.stop_price <= 0:
        raise TrailTooWide(close=close)


def _holds(order: Transaction, close: Decimal) -> bool:
    if order.rises_to is not None:
        return close >= order.rises_to
    return close <= order.falls_to


def _react(order: Transaction, close: Decimal, now: datetime) -> list[str]:
    """Apply a close to an armed open order: trigger its stop, make it ready to fill at that
    close. Returns the events that happened ("triggered")."""
    if not _holds(order, close):
        return []
    events = []
    if order.order_type == OrderType.STOP_LIMIT and order.triggered_at is None:
        order.triggered_at = now
        events.append("triggered")
        _arm(order)  # from now on a limit order
        if not _holds(order, close):
            return events
    elif order.order_type in STOPS:
        order.triggered_at = now
        events.append("triggered")
    order.ready_price, order.ready_at = close, now
    return events


def _cash_for(order: Transaction, amount: Decimal) -> Decimal:
    """price x volume in cash, rounded against the account holder: a buy pays (up, so at
    least 0.01), a sell receives (down). Rounding never creates cash."""
    return cash_to_pay(amount) if order.is_buy else cash_to_receive(amount)


def _price_open_order(order: Transaction) -> None:
    """An open order's unit_price and transaction_price: what it reserves (a buy) or asks
    (a sell) per share and in all. A stop buy fills at the triggering close, which may be
    above its stop, so it reserves STOP_BUY_COLLAR more, rounded up."""
    if order.order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT):
        per_share = order.limit_price
    elif order.is_buy:
        per_share = price_to_pay(order.stop_price * (1 + settings.STOP_BUY_COLLAR))
    else:
        per_share = order.stop_price
    order.unit_price = per_share
    order.transaction_price = _cash_for(order, per_share * order.transaction_volume)


def _past_cutoff(order: Transaction, now: datetime) -> bool:
    """An order whose expiry has come is expired, whatever else it could still do: replace,
    settlement and fill all ask this first, so a day order never outlives its cut-off."""
    return order.expires_at is not None and order.expires_at <= now


def next_market_close(now: datetime) -> datetime:
    """The first MARKET_CLOSE_UTC cut-off after `now`: when a day order expires."""
    cutoff = time.fromisoformat(settings.MARKET_CLOSE_UTC)
    today = datetime.combine(now.date(), cutoff, tzinfo=now.tzinfo)
    return today if today > now else today + timedelta(days=1)
