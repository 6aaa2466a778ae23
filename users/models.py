"""The user model: a Django user with a cash balance that the database keeps >= 0.

Usernames are unique regardless of case, in the database (a unique index on
LOWER(username)), and every lookup by name goes through that index, so `Alice`, `ALICE`
and `alice` are one account for registration, reads and logins alike.
"""

from django.contrib.auth.models import AbstractUser, UserManager
from django.db import models
from django.db.models.functions import Lower
from rest_framework.authtoken.models import Token

from stockflow.money import CASH_DECIMAL_PLACES, CASH_MAX_DIGITS


class UserQuerySet(models.QuerySet):
    def named(self, username: str):
        """The account called `username`, in any case (the LOWER(username) index)."""
        return self.alias(username_lower=Lower("username")).filter(
            username_lower=Lower(models.Value(username, output_field=models.CharField()))
        )


class StockFlowUserManager(UserManager.from_queryset(UserQuerySet)):
    def get_by_natural_key(self, username):
        # Logins (the token endpoint, the admin) find the account by any case of its name.
        return self.named(username).get()


class User(AbstractUser):
    balance = models.DecimalField(
        max_digits=CASH_MAX_DIGITS, decimal_places=CASH_DECIMAL_PLACES, default=0
    )
    # Cash promised to open buy orders: the sum of their reservations, never above balance.
    reserved = models.DecimalField(
        max_digits=CASH_MAX_DIGITS, decimal_places=CASH_DECIMAL_PLACES, default=0
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = StockFlowUserManager()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(balance__gte=0), name="user_balance_non_negative"
            ),
            models.CheckConstraint(
                condition=models.Q(reserved__gte=0, reserved__lte=models.F("balance")),
                name="user_reserved_within_balance",
            ),
            models.UniqueConstraint(Lower("username"), name="user_username_unique_any_case"),
        ]

    def __str__(self) -> str:
        return self.username

    @property
    def buying_power(self):
        """Cash that a new order or a withdrawal may still use."""
        return self.balance - self.reserved

    def load_money(self) -> None:
        """Read the balance and reservation in one query if they are not loaded: the account
        that authentication hands over (users.authentication) has only what authorisation
        needs, and each deferred field would otherwise cost a query of its own."""
        if self.get_deferred_fields() & {"balance", "reserved"}:
            self.refresh_from_db(fields=["balance", "reserved"])

    def issue_token(self) -> Token:
        """The account's API token (`Authorization: Token <key>`), created on first call."""
        token, _ = Token.objects.get_or_create(user=self)
        return token
