"""Money helpers: one place for digits, places and the rounding mode."""

from decimal import ROUND_HALF_UP, Decimal

CASH_PLACES = Decimal("0.01")
PRICE_PLACES = Decimal("0.0001")
# Cash columns hold balances that sells can grow beyond what registration allows.
CASH_MAX_DIGITS = 30
PRICE_MAX_DIGITS = 18
MAX_OPENING_BALANCE = Decimal("1000000000000")  # exclusive upper bound at registration
ZERO = Decimal("0.00")


def quantize_cash(amount: Decimal) -> Decimal:
    """Round to cents, half up (API.md: price x volume is rounded this way)."""
    return amount.quantize(CASH_PLACES, rounding=ROUND_HALF_UP)


def quantize_price(amount: Decimal) -> Decimal:
    return amount.quantize(PRICE_PLACES, rounding=ROUND_HALF_UP)
