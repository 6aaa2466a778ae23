"""Factories for transactions and positions (built directly, bypassing settlement)."""

from decimal import Decimal

import factory

from stockflow.money import cash_to_pay, cash_to_receive
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
    # As submission prices it: a buy pays price x volume rounded up, a sell receives it down.
    transaction_price = factory.LazyAttribute(
        lambda o: (cash_to_pay if o.transaction_type == TransactionType.BUY else cash_to_receive)(
            Decimal(o.unit_price) * o.transaction_volume
        )
    )


class PositionFactory(factory.django.DjangoModelFactory[Position]):
    class Meta:
        model = Position

    user = factory.SubFactory(UserFactory)
    ticker = "AAPL"
    quantity = 10
    average_cost = Decimal("100.0000")
