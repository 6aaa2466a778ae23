"""seed_demo: the demo quotes and accounts, loaded through the services, once, with
well-known passwords only on the embedded default."""

import re
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework.authtoken.models import Token

from stocks.models import StockData
from users.models import User


@pytest.fixture
def embedded(settings):
    settings.EMBEDDED_DATABASE = settings.EMBEDDED_REDIS = True


@pytest.mark.django_db
def test_seed_demo_loads_quotes_and_accounts_once(capsys, embedded):
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


@pytest.mark.django_db
def test_seed_demo_outside_the_embedded_default_generates_the_staff_password_and_prints_it_once(
    capsys,
):
    call_command("seed_demo")
    call_command("seed_demo")

    out = capsys.readouterr().out
    printed = re.findall(r"staff user 'admin' \(created now, password '([^']+)'", out)
    assert len(printed) == 1, out
    admin = User.objects.get(username="admin")
    assert admin.check_password(printed[0])
    assert not admin.check_password("admin-pass-2025")
    assert len(printed[0]) >= 20
    assert "staff user 'admin' (exists, left as it is)" in out
    demo = User.objects.get(username="demo")
    assert not demo.check_password("demo-pass-2025")


@pytest.mark.django_db
def test_seed_demo_takes_the_passwords_from_the_environment(capsys, settings):
    settings.SEED_ADMIN_PASSWORD = "from-the-env-Secret-1"
    settings.SEED_DEMO_PASSWORD = "demo-from-the-env-2"

    call_command("seed_demo")

    assert User.objects.get(username="admin").check_password("from-the-env-Secret-1")
    assert User.objects.get(username="demo").check_password("demo-from-the-env-2")
    assert "(as configured)" in capsys.readouterr().out
