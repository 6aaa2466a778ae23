"""Money helpers: one place for digits, places, limits and the rounding mode."""

from decimal import ROUND_HALF_UP, Decimal, DefaultContext

CASH_DECIMAL_PLACES = 2
PRICE_DECIMAL_PLACES = 4
CASH_PLACES = Decimal("0.01")
PRICE_PLACES = Decimal("0.0001")
# Cash columns hold balances that sells can grow beyond what registration allows.
CASH_MAX_DIGITS = 30
PRICE_MAX_DIGITS = 18
# Registration takes at most 13 integer digits: below MAX_OPENING_BALANCE.
OPENING_BALANCE_MAX_DIGITS = 15
MAX_OPENING_BALANCE = Decimal("1000000000000")  # exclusive upper bound at registration
ZERO = Decimal("0.00")
MAX_ORDER_VOLUME = 1_000_000_000  # shares in one order
MAX_TRANSFER_AMOUNT = MAX_OPENING_BALANCE  # exclusive upper bound of one deposit or withdrawal
# Exclusive: the largest balance both a cash column (CASH_MAX_DIGITS digits) and Decimal
# arithmetic in the default context (28 significant digits) hold to the cent. A deposit that
# would reach it is refused (400), never rounded or a database error.
MAX_BALANCE = Decimal(10) ** (min(CASH_MAX_DIGITS, DefaultContext.prec) - CASH_DECIMAL_PLACES)


def quantize_cash(amount: Decimal) -> Decimal:
    """Round to cents, half up (price x volume is rounded this way)."""
    return amount.quantize(CASH_PLACES, rounding=ROUND_HALF_UP)


def quantize_price(amount: Decimal) -> Decimal:
    return amount.quantize(PRICE_PLACES, rounding=ROUND_HALF_UP)
