"""Money helpers: one place for digits, places, limits and each rounding direction.

Rounding never favours the account holder: a cash amount computed from price x volume is
rounded up to the cent when they pay or reserve it, down when they receive it, so no sequence
of trades at one price can create cash (DESIGN invariant 8). These helpers are the only
rounding of cash in the code; `quantize_price` rounds prices, which are not cash.
"""

from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal, DefaultContext

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


def _non_negative(amount: Decimal) -> Decimal:
    # Ceiling and floor mean "against the holder" only for amounts >= 0: on a negative
    # amount ROUND_CEILING would round towards zero, in the holder's favour.
    if amount < 0:
        raise ValueError(f"a cash amount to round must be >= 0, not {amount}")
    return amount


def cash_to_pay(amount: Decimal) -> Decimal:
    """What the account holder pays or reserves (a buy, a buy's reservation, a cost basis):
    rounded up to the cent (ROUND_CEILING). Anything above 0 costs at least 0.01."""
    return _non_negative(amount).quantize(CASH_PLACES, rounding=ROUND_CEILING)


def cash_to_receive(amount: Decimal) -> Decimal:
    """What the account holder receives (a sell's proceeds, a position's market value):
    rounded down to the cent (ROUND_FLOOR)."""
    return _non_negative(amount).quantize(CASH_PLACES, rounding=ROUND_FLOOR)


def is_whole_cents(amount: Decimal) -> bool:
    """Whether `amount` needs no rounding to be a cash amount (transfers must not be rounded)."""
    return amount == amount.quantize(CASH_PLACES, rounding=ROUND_FLOOR)


def cash_exact(amount: Decimal) -> Decimal:
    """`amount` with exactly 2 places (5 and 5.000 become 5.00); never rounds: an amount that
    is not in whole cents raises ValueError."""
    if not is_whole_cents(amount):
        raise ValueError(f"{amount} is not a whole number of cents")
    return amount.quantize(CASH_PLACES)


def price_to_pay(amount: Decimal) -> Decimal:
    """A per-share price that stands for cash paid (a stop buy's collar, a position's average
    cost): rounded up to 4 places (ROUND_CEILING), so what it reserves or counts as cost is
    never less than the exact figure."""
    return _non_negative(amount).quantize(PRICE_PLACES, rounding=ROUND_CEILING)


def quantize_price(amount: Decimal) -> Decimal:
    """A price to 4 places, half up: prices are not cash (a trailing stop's level)."""
    return amount.quantize(PRICE_PLACES, rounding=ROUND_HALF_UP)
