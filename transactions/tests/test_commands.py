"""seed_demo: the demo quotes and accounts, loaded through the services, once."""

from decimal import Decimal

import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework.authtoken.models import Token

from stocks.models import StockData
from users.models import User


@pytest.mark.django_db
def test_seed_demo_loads_quotes_and_accounts_once(capsys):
    call_command("seed_demo")
    call_command("seed_demo")

    assert StockData.objects.count() == 5 * 30
    assert StockData.objects.values("ticker").distinct().count() == 5
    demo, admin = User.objects.get(username="demo"), User.objects.get(username="admin")
    assert demo.balance == Decimal("100000.00") and not demo.is_staff
    assert admin.is_staff and admin.is_superuser
    assert admin.check_password("admin-pass-2025")
    assert capsys.readouterr().out.count(Token.objects.get(user=admin).key) == 2


@pytest.mark.django_db
def test_seed_demo_leaves_an_existing_account_of_any_case_alone(capsys):
    User.objects.create(username="DEMO", balance=Decimal("5.00"))

    call_command("seed_demo")

    assert list(
        User.objects.filter(username__iexact="demo").values_list("username", "balance")
    ) == [("DEMO", Decimal("5.00"))]


@pytest.mark.django_db
def test_seed_demo_quotes_are_all_in_the_past_and_pass_the_quote_rules():
    call_command("seed_demo")

    assert not StockData.objects.filter(timestamp__gt=timezone.now()).exists()
    assert StockData.objects.filter(ticker="AAPL").count() == 30
