"""The user model: a Django user with a cash balance that the database keeps >= 0.

One account per name: `username` is shown as typed, and `username_canonical` (NFKC, case
folded: stockflow.text.canonical_username) is unique in the database and is what every
lookup by name compares, so `Alice` and `ALICE`, full-width and ASCII letters, a final and a
capital sigma, `stra\u00dfe` and `STRASSE`, a composed and a decomposed accent each find one
account for registration, reads and logins alike.

The money columns (`balance`, `reserved`) are written only by the services, with queryset
`.update()`s under the row lock: `save()` of an existing user writes every other field and
refuses to write those two (see `User.save`).
"""

from django.contrib.auth.models import AbstractUser, UserManager
from django.db import models
from rest_framework.authtoken.models import Token

from stockflow.money import CASH_DECIMAL_PLACES, CASH_MAX_DIGITS
from stockflow.text import canonical_username

USERNAME_MAX_LENGTH = 150
# Only what a services' UPDATE writes: a model save would write back the value it read.
MONEY_FIELDS = frozenset({"balance", "reserved"})


class MoneyWriteRefused(RuntimeError):
    """A model save tried to write an existing user's balance or reservation."""


class UserQuerySet(models.QuerySet):
    def named(self, username: str):
        """The account called `username` in any spelling: its canonical form's unique index."""
        return self.filter(username_canonical=canonical_username(username))


class StockFlowUserManager(UserManager.from_queryset(UserQuerySet)):
    def get_by_natural_key(self, username):
        # Logins (the token endpoint, the admin, createsuperuser's "is it taken?") find the
        # account by any spelling of its name.
        return self.named(username).get()


class User(AbstractUser):
    # Derived from `username` on every save; never set it by hand.
    username_canonical = models.CharField(
        max_length=USERNAME_MAX_LENGTH, unique=True, editable=False
    )
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
        ]

    def __str__(self) -> str:
        return self.username

    @classmethod
    def from_db(cls, db, field_names, values):
        user = super().from_db(db, field_names, values)
        user._remember_money()
        return user

    def refresh_from_db(self, using=None, fields=None, from_queryset=None):
        # Also what reading a deferred field calls, with just that field.
        super().refresh_from_db(using=using, fields=fields, from_queryset=from_queryset)
        self._remember_money(MONEY_FIELDS if fields is None else MONEY_FIELDS & set(fields))

    def _remember_money(self, fields=MONEY_FIELDS) -> None:
        # The money values as the database last gave them (deferred ones are absent), to
        # tell a save that would drop an in-memory change from one that changes nothing.
        loaded = self.__dict__.setdefault("_money_as_loaded", {})
        loaded.update({f: self.__dict__[f] for f in fields if f in self.__dict__})

    def save(self, **kwargs):
        """Save; an existing user's money columns are never written from here.

        `update_fields` naming `balance` or `reserved` raises MoneyWriteRefused. Without
        `update_fields` (Django's own saves: changepassword, the admin's password form)
        every loaded field but those two is written, and a balance or reservation changed
        in memory since it was loaded raises rather than being dropped unseen. Settlement
        moves cash with an UPDATE under the row lock; a save that wrote the value it had
        read before that lock was released would put settled cash back.
        """
        if "username" in self.__dict__:
            self.username_canonical = canonical_username(self.username)
        if self._state.adding or self.pk is None or kwargs.get("force_insert"):
            super().save(**kwargs)  # a new account: its opening balance is its first value
            self._remember_money()
            return
        kwargs["update_fields"] = self._fields_to_update(kwargs.get("update_fields"))
        super().save(**kwargs)

    def _fields_to_update(self, update_fields) -> list[str]:
        if update_fields is not None:
            fields = set(update_fields)
            if fields & MONEY_FIELDS:
                raise MoneyWriteRefused(
                    f"save(update_fields=...) may not write {sorted(fields & MONEY_FIELDS)}: "
                    "only the services in transactions/ move cash, with an UPDATE under the "
                    "user's row lock. Drop those fields from update_fields."
                )
            return sorted(fields | ({"username_canonical"} if "username" in fields else set()))
        loaded = self.__dict__.get("_money_as_loaded", {})
        changed = sorted(
            f
            for f in MONEY_FIELDS
            if f in self.__dict__ and (f not in loaded or self.__dict__[f] != loaded[f])
        )
        if changed:
            raise MoneyWriteRefused(
                f"User {self.pk}'s {changed} changed in memory: save() does not write money "
                "columns. Move cash through the services in transactions/."
            )
        return [
            f.name
            for f in self._meta.concrete_fields
            if not f.primary_key and f.attname in self.__dict__ and f.name not in MONEY_FIELDS
        ]

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
