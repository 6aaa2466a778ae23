"""Reservations: the cash (on the user) or shares (on the position) an open order holds, taken
with a conditional UPDATE and given back on cancel, expiry or a replace that cannot fill."""

from decimal import Decimal

from django.db.models import F

from users.models import User

from ..errors import InsufficientBuyingPower, InsufficientShares
from ..models import Position, Transaction


def _reserve(order: Transaction, *, releasing: Decimal | int = 0) -> None:
    """Reserve what `order` needs, less `releasing` (what it held before a replace).

    A conditional UPDATE: its row count proves the unreserved cash or shares covered it,
    however many submissions race.
    """
    if order.is_buy:
        needed = order.transaction_price - releasing
        if needed == 0:
            return
        reserved = User.objects.filter(
            pk=order.user_id, balance__gte=F("reserved") + needed
        ).update(reserved=F("reserved") + needed)
        if not reserved:
            user = User.objects.get(pk=order.user_id)
            raise InsufficientBuyingPower(
                needed=order.transaction_price, available=user.buying_power + releasing
            )
        return
    needed = order.transaction_volume - releasing
    if needed == 0:
        return
    reserved = Position.objects.filter(
        user_id=order.user_id, ticker=order.ticker, quantity__gte=F("reserved") + needed
    ).update(reserved=F("reserved") + needed)
    if not reserved:
        held = Position.objects.filter(user_id=order.user_id, ticker=order.ticker).first()
        raise InsufficientShares(
            needed=order.transaction_volume,
            ticker=order.ticker,
            available=(held.available if held else 0) + releasing,
        )


def _release(order: Transaction, *, held: Decimal | int | None = None) -> None:
    """Give back an open order's reservation (cancel; a replace to ioc that cannot fill):
    `held`, what it held before a replace changed its terms, else what it holds."""
    if order.is_buy:
        amount = order.transaction_price if held is None else held
        User.objects.filter(pk=order.user_id).update(reserved=F("reserved") - amount)
    else:
        shares = order.transaction_volume if held is None else held
        Position.objects.filter(user_id=order.user_id, ticker=order.ticker).update(
            reserved=F("reserved") - shares
        )
