"""The user model: a Django user with a cash balance that the database keeps >= 0."""

from django.contrib.auth.models import AbstractUser
from django.db import models

from stockflow.money import CASH_MAX_DIGITS


class User(AbstractUser):
    balance = models.DecimalField(max_digits=CASH_MAX_DIGITS, decimal_places=2, default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(balance__gte=0), name="user_balance_non_negative"
            ),
        ]

    def __str__(self) -> str:
        return self.username
