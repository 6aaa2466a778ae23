"""Operator commands: DRF's token command and createsuperuser from the environment."""

from decimal import Decimal

import pytest
from django.core.management import call_command
from rest_framework.authtoken.models import Token

from users.models import User
from users.tests.factories import UserFactory


@pytest.mark.django_db
def test_drf_create_token_issues_a_token_that_authenticates(api_client, capsys):
    user = UserFactory(username="feed")
    Token.objects.filter(user=user).delete()

    call_command("drf_create_token", "feed")

    key = Token.objects.get(user=user).key
    assert key in capsys.readouterr().out
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert api_client.get("/users/feed/").status_code == 200


@pytest.mark.django_db
def test_createsuperuser_noinput_reads_the_django_superuser_variables(monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", "ops")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a-long-unguessable-password")
    monkeypatch.setenv("DJANGO_SUPERUSER_EMAIL", "ops@example.com")

    call_command("createsuperuser", interactive=False, verbosity=0)

    ops = User.objects.get(username="ops")
    assert (ops.is_staff, ops.is_superuser, ops.balance) == (True, True, Decimal("0.00"))
    assert ops.check_password("a-long-unguessable-password")
