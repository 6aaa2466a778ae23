"""Order serializers: submission and replace input, the order terms' rules, transactions and
their filter."""

import re

from rest_framework import serializers

from stockflow.fields import WS, DecimalField, TickerField, WholeNumberField
from stockflow.filters import TimeRangeSerializer
from stockflow.money import MAX_ORDER_VOLUME
from stockflow.serializers import ReadOnlyModelSerializer
from stockflow.text import upper_ascii

from ..models import PRICE, OrderType, TimeInForce, Transaction, TransactionType


class TransactionTypeField(serializers.ChoiceField):
    """`buy` or `sell` in any case; stored upper-case."""

    def __init__(self, **kwargs):
        super().__init__(choices=TransactionType.values, **kwargs)

    def to_internal_value(self, data):
        if isinstance(data, str):
            data = upper_ascii(data)
        return super().to_internal_value(data)

    def openapi_schema(self, *, in_body: bool) -> dict:
        return {
            "type": "string",
            "pattern": f"^{WS}([Bb][Uu][Yy]|[Ss][Ee][Ll][Ll]){WS}$",
            "example": "buy",
        }


class AnyCaseChoiceField(serializers.ChoiceField):
    """One of `choices` (lower-case) in any case, e.g. `LIMIT` or `Limit` for `limit`."""

    def to_internal_value(self, data):
        if isinstance(data, str):
            data = upper_ascii(data).lower()
        return super().to_internal_value(data)

    def openapi_schema(self, *, in_body: bool) -> dict:
        any_case = "|".join(
            "".join(f"[{c.upper()}{c}]" if c.isalpha() else re.escape(c) for c in choice)
            for choice in self.choices
        )
        return {
            "type": "string",
            "pattern": f"^{WS}({any_case}){WS}$",
            "example": next(iter(self.choices)),
        }


def _price_field(help_text: str) -> DecimalField:
    return DecimalField(**PRICE, required=False, help_text=f"{help_text} > 0, up to 4 places.")


def _percent_field(help_text: str) -> DecimalField:
    # 3 integer digits, so that 100 gets the message that says why it is refused.
    return DecimalField(
        max_digits=7, decimal_places=4, required=False, help_text=f"{help_text} 0 < p < 100."
    )


# Which prices each order type takes: required ones, and those it may take.
ORDER_PRICES = {
    OrderType.MARKET: (),
    OrderType.LIMIT: ("limit_price",),
    OrderType.STOP: ("stop_price",),
    OrderType.STOP_LIMIT: ("limit_price", "stop_price"),
    OrderType.TRAILING_STOP: (),  # exactly one of trail_price, trail_percent
}
PRICE_FIELDS = ("limit_price", "stop_price", "trail_price", "trail_percent")
TRAILS = ("trail_price", "trail_percent")


def validate_order_terms(order_type: str, terms: dict) -> dict:
    """Refuse (400) prices the order type does not use, missing ones, and both trails.

    `terms` holds the prices and time_in_force as they will be; returns field -> messages.
    """
    errors = {}
    uses = set(ORDER_PRICES[order_type]) | (
        set(TRAILS) if order_type == OrderType.TRAILING_STOP else set()
    )
    for name in PRICE_FIELDS:
        value = terms.get(name)
        if value is None:
            continue
        if name not in uses:
            errors[name] = [f"A {order_type} order takes no {name}."]
        elif value <= 0:
            errors[name] = ["Ensure this value is greater than 0."]
        elif name == "trail_percent" and value >= 100:
            errors[name] = ["Ensure this value is less than 100."]
    for name in ORDER_PRICES[order_type]:
        if terms.get(name) is None:
            errors[name] = [f"A {order_type} order needs {name}."]
    if order_type == OrderType.TRAILING_STOP:
        given = [name for name in TRAILS if terms.get(name) is not None]
        if len(given) != 1:
            errors["trail_price"] = [
                "A trailing_stop order needs exactly one of trail_price and trail_percent."
            ]
    if order_type == OrderType.MARKET and terms.get("time_in_force") is not None:
        errors["time_in_force"] = [
            "A market order takes no time_in_force: it settles at once, at the latest close."
        ]
    return errors


class TransactionSubmitSerializer(serializers.Serializer):
    user_id = WholeNumberField(
        required=False, min_value=1, help_text="Defaults to the caller's own account."
    )
    user = WholeNumberField(required=False, min_value=1, help_text="Synonym of user_id.")
    ticker = TickerField()
    transaction_type = TransactionTypeField(help_text="buy or sell, any case")
    transaction_volume = WholeNumberField(min_value=1, max_value=MAX_ORDER_VOLUME)
    order_type = AnyCaseChoiceField(
        choices=OrderType.values,
        required=False,
        help_text="market (default), limit, stop, stop_limit or trailing_stop; any case.",
    )
    limit_price = _price_field("For limit and stop_limit orders:")
    stop_price = _price_field("For stop and stop_limit orders:")
    trail_price = _price_field("For trailing_stop orders, an amount (or trail_percent):")
    trail_percent = _percent_field("For trailing_stop orders, a percentage (or trail_price):")
    time_in_force = AnyCaseChoiceField(
        choices=TimeInForce.values,
        required=False,
        help_text="Not for market orders. day (the default: expires at the daily cut-off), "
        "gtc (until cancelled) or ioc (fills now if its condition holds, else expires).",
    )

    class Meta:
        ref_name = "TransactionSubmit"
        swagger_schema_fields = {
            "example": {
                "ticker": "AAPL",
                "transaction_type": "buy",
                "transaction_volume": 10,
                "order_type": "limit",
                "limit_price": "180.00",
                "time_in_force": "gtc",
            }
        }

    def validate(self, attrs):
        user_id, synonym = attrs.pop("user_id", None), attrs.pop("user", None)
        if user_id is not None and synonym is not None and user_id != synonym:
            raise serializers.ValidationError({"user": ["user and user_id name different users."]})
        attrs["user_id"] = user_id if user_id is not None else synonym
        attrs["order_type"] = attrs.get("order_type") or OrderType.MARKET
        errors = validate_order_terms(attrs["order_type"], attrs)
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class TransactionReplaceSerializer(serializers.Serializer):
    """What PATCH may change on an open order; at least one of them."""

    transaction_volume = WholeNumberField(min_value=1, max_value=MAX_ORDER_VOLUME, required=False)
    limit_price = _price_field("For limit and stop_limit orders:")
    stop_price = _price_field("For stop and stop_limit orders:")
    trail_price = _price_field("For trailing_stop orders (replaces trail_percent):")
    trail_percent = _percent_field("For trailing_stop orders (replaces trail_price):")
    time_in_force = AnyCaseChoiceField(choices=TimeInForce.values, required=False)

    class Meta:
        ref_name = "TransactionReplace"
        swagger_schema_fields = {"example": {"limit_price": "178.50", "transaction_volume": 12}}

    def validate(self, attrs):
        if not attrs:
            raise serializers.ValidationError(
                {"non_field_errors": ["Send at least one field to change."]}
            )
        order = self.context["order"]
        terms = {name: getattr(order, name) for name in (*PRICE_FIELDS, "time_in_force")}
        if order.order_type == OrderType.TRAILING_STOP and set(TRAILS) & set(attrs):
            terms.update(dict.fromkeys(TRAILS))  # one trail replaces the other
        terms.update(attrs)
        if order.order_type == OrderType.TRAILING_STOP:
            # Only the trail is the client's; the stop is where the trail put it.
            terms["stop_price"] = None
        errors = validate_order_terms(order.order_type, terms)
        if errors:
            raise serializers.ValidationError(errors)
        if order.order_type == OrderType.TRAILING_STOP and set(TRAILS) & set(attrs):
            attrs = {**attrs, **{name: terms[name] for name in TRAILS}}
        return attrs


class TransactionSerializer(ReadOnlyModelSerializer):
    user_id = serializers.IntegerField(read_only=True)

    class Meta:
        model = Transaction
        ref_name = "Transaction"
        swagger_schema_fields = {
            "example": {
                "id": 311,
                "user_id": 7,
                "ticker": "AAPL",
                "transaction_type": "BUY",
                "transaction_volume": 10,
                "unit_price": "180.0000",
                "transaction_price": "1800.00",
                "status": "open",
                "failure_reason": None,
                "timestamp": "2025-01-02T21:00:05Z",
                "settled_at": None,
                "order_type": "limit",
                "limit_price": "180.0000",
                "stop_price": None,
                "trail_price": None,
                "trail_percent": None,
                "time_in_force": "gtc",
                "triggered_at": None,
                "filled_price": None,
                "expires_at": None,
                "replaced_at": None,
            }
        }
        fields = list(Transaction.API_FIELDS)
        read_only_fields = fields
        extra_kwargs = {
            "transaction_price": {
                "help_text": "unit_price x transaction_volume in cash, rounded to the cent "
                "against the account holder: up for a buy (what it pays or reserves; at least "
                "0.01), down for a sell (what it receives). Rounding never creates cash."
            },
            "unit_price": {
                "help_text": "Per share: the close a market order is priced at; an open order's "
                "limit or stop (a stop buy's plus STOP_BUY_COLLAR, rounded up); once filled, "
                "the fill price."
            },
        }


class TransactionFilterSerializer(TimeRangeSerializer):
    start_name, end_name = "start_timestamp", "end_timestamp"

    class Meta:
        ref_name = "TransactionFilter"
