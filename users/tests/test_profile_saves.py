"""Money columns are written only by services: profile saves write the fields they change,
and no model save of an existing user writes its balance or reservation."""

from decimal import Decimal

import pytest
from django.contrib.auth.models import update_last_login
from django.core.management import call_command
from django.db.models.signals import post_save

from stocks.tests.factories import StockDataFactory
from transactions.models import Position, TransactionStatus, TransactionType
from transactions.services import transaction_submit, transactions_settle_for_user
from users.errors import DuplicateUsername
from users.models import MoneyWriteRefused, User
from users.services import user_update
from users.tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def stored(user: User) -> tuple[Decimal, Decimal]:
    return User.objects.values_list("balance", "reserved").get(pk=user.pk)


def test_an_email_change_saved_after_a_buy_settled_keeps_the_settled_balance():
    user = UserFactory(balance=Decimal("1000.00"))
    StockDataFactory(ticker="ACME", close_price=Decimal("10.0000"))
    loaded = User.objects.get(pk=user.pk)  # as the admin's save request read it
    buy = transaction_submit(
        user=user, ticker="ACME", transaction_type=TransactionType.BUY, transaction_volume=10
    )
    transactions_settle_for_user(user_id=user.pk)
    buy.refresh_from_db()
    assert (buy.status, stored(user)) == (TransactionStatus.COMPLETED, (Decimal("900.00"), 0))

    loaded.email = "new@example.com"
    user_update(user=loaded)

    assert stored(user) == (Decimal("900.00"), Decimal("0.00"))
    assert User.objects.get(pk=user.pk).email == "new@example.com"
    assert Position.objects.get(user=user, ticker="ACME").quantity == 10


def test_user_update_writes_only_the_fields_it_is_given():
    user = UserFactory(first_name="Ann", email="ann@example.com")
    loaded = User.objects.get(pk=user.pk)
    loaded.first_name, loaded.email = "Changed", "ann@example.org"
    saved = []
    post_save.connect(lambda **kw: saved.append(kw["update_fields"]), sender=User, weak=False)
    try:
        user_update(user=loaded, fields=["email"])
    finally:
        post_save.receivers.pop()

    assert saved == [frozenset({"email"})]
    assert User.objects.values_list("first_name", "email").get(pk=user.pk) == (
        "Ann",
        "ann@example.org",
    )


def test_user_update_to_a_name_another_account_has_is_duplicate_username():
    UserFactory(username="stra\u00dfe")
    other = UserFactory(username="other")
    other.username = "STRASSE"

    with pytest.raises(DuplicateUsername):
        user_update(user=other, fields=["username"])

    assert User.objects.filter(pk=other.pk).values_list("username", flat=True).get() == "other"


@pytest.mark.parametrize("fields", [["balance"], ["reserved"], ["email", "balance"]])
def test_a_save_naming_a_money_column_in_update_fields_raises(fields):
    user = UserFactory(balance=Decimal("100.00"))
    user.balance, user.email = Decimal("5000.00"), "x@example.com"

    with pytest.raises(MoneyWriteRefused, match="only the services in transactions/"):
        user.save(update_fields=fields)

    assert stored(user) == (Decimal("100.00"), Decimal("0.00"))
    assert User.objects.get(pk=user.pk).email == ""


@pytest.mark.parametrize("field", ["balance", "reserved"])
def test_a_plain_save_of_money_changed_in_memory_raises_and_writes_nothing(field):
    user = User.objects.get(pk=UserFactory(balance=Decimal("100.00")).pk)
    setattr(user, field, Decimal("50.00"))
    user.email = "x@example.com"

    with pytest.raises(MoneyWriteRefused, match=f"\\['{field}'\\] changed in memory"):
        user.save()

    assert stored(user) == (Decimal("100.00"), Decimal("0.00"))
    assert User.objects.get(pk=user.pk).email == ""


def test_a_plain_save_writes_every_field_but_the_money_columns():
    user = UserFactory(balance=Decimal("100.00"))
    loaded = User.objects.get(pk=user.pk)
    User.objects.filter(pk=user.pk).update(balance=Decimal("60.00"), reserved=Decimal("10.00"))
    loaded.last_name = "Lee"

    loaded.save()

    assert stored(user) == (Decimal("60.00"), Decimal("10.00"))
    assert User.objects.get(pk=user.pk).last_name == "Lee"


def test_a_money_column_read_after_loading_is_its_stored_value_again():
    # Reading a deferred field, or refreshing, is a load: saving after it changes nothing.
    user = User.objects.only("id", "username").get(pk=UserFactory(balance=Decimal("7.00")).pk)
    assert user.balance == Decimal("7.00")
    user.is_active = False

    user.save()

    assert User.objects.values_list("is_active", "balance").get(pk=user.pk) == (
        False,
        Decimal("7.00"),
    )


def test_django_s_own_saves_of_a_user_keep_working(monkeypatch, capsys):
    user = UserFactory(username="dana", balance=Decimal("100.00"))
    User.objects.filter(pk=user.pk).update(balance=Decimal("40.00"))  # settled meanwhile

    update_last_login(None, user)
    monkeypatch.setattr("getpass.getpass", lambda prompt="": "a-new-long-password-9")
    call_command("changepassword", "dana")

    dana = User.objects.get(pk=user.pk)
    assert dana.last_login is not None
    assert dana.check_password("a-new-long-password-9")
    assert stored(dana) == (Decimal("40.00"), Decimal("0.00"))
    assert "Password changed successfully for user 'dana'" in capsys.readouterr().out
