"""Factories for transactions and positions (built directly, bypassing settlement)."""

from decimal import Decimal

import factory

from stockflow.money import quantize_cash
from transactions.models import Position, Transaction, TransactionType
from users.tests.factories import UserFactory


class TransactionFactory(factory.django.DjangoModelFactory[Transaction]):
    class Meta:
        model = Transaction

    user = factory.SubFactory(UserFactory)
    ticker = "AAPL"
    transaction_type = TransactionType.BUY
    transaction_volume = 1
    unit_price = Decimal("100.0000")
    transaction_price = factory.LazyAttribute(
        lambda o: quantize_cash(Decimal(o.unit_price) * o.transaction_volume)
    )


class PositionFactory(factory.django.DjangoModelFactory[Position]):
    class Meta:
        model = Position

    user = factory.SubFactory(UserFactory)
    ticker = "AAPL"
    quantity = 10
    average_cost = Decimal("100.0000")
