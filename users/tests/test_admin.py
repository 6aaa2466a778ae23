"""The user admin: profile changes write only what the operator changed, the balance is never
written back, and a name another account has (in any spelling) is a form error."""

from decimal import Decimal

import pytest
from django.db.models.signals import post_save

from users.models import User
from users.tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator_client(client):
    client.force_login(UserFactory(username="root-op", is_staff=True, is_superuser=True))
    return client


def change_form(user: User, **changes) -> dict:
    """The change form as the admin renders it for `user`, with `changes` typed in."""
    form = {
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "is_active": "on",
    }
    return {**form, **changes}


def test_the_admin_change_form_saves_a_profile_change_and_only_that(operator_client):
    user = UserFactory(balance=Decimal("100.00"), first_name="Ann")
    saved = []
    post_save.connect(lambda **kw: saved.append(kw["update_fields"]), sender=User, weak=False)
    try:
        response = operator_client.post(
            f"/admin/users/user/{user.pk}/change/", change_form(user, email="ann@example.com")
        )
    finally:
        post_save.receivers.pop()

    assert response.status_code == 302, response.content
    assert saved == [frozenset({"email"})]
    assert User.objects.values_list("email", "first_name", "balance").get(pk=user.pk) == (
        "ann@example.com",
        "Ann",
        Decimal("100.00"),
    )


def test_the_admin_password_form_sets_the_password_and_leaves_the_balance(operator_client):
    user = UserFactory(balance=Decimal("100.00"))
    User.objects.filter(pk=user.pk).update(balance=Decimal("75.00"))

    response = operator_client.post(
        f"/admin/users/user/{user.pk}/password/",
        {"password1": "a-fresh-long-password-1", "password2": "a-fresh-long-password-1"},
    )

    assert response.status_code == 302, response.content
    changed = User.objects.get(pk=user.pk)
    assert changed.check_password("a-fresh-long-password-1")
    assert changed.balance == Decimal("75.00")


@pytest.mark.parametrize(
    ("existing", "typed"), [("stra\u00dfe", "STRASSE"), ("nik\u03c2", "NIK\u03a3")]
)
def test_renaming_to_a_name_another_account_has_is_a_form_error(operator_client, existing, typed):
    UserFactory(username=existing)
    user = UserFactory(username="other")

    response = operator_client.post(
        f"/admin/users/user/{user.pk}/change/", change_form(user, username=typed)
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "username": ["A user with that username already exists."]
    }
    assert User.objects.get(pk=user.pk).username == "other"


def test_adding_a_user_whose_name_another_account_has_is_a_form_error(operator_client):
    UserFactory(username="\uff4e\uff49\uff4b")  # full-width

    response = operator_client.post(
        "/admin/users/user/add/",
        {
            "username": "NIK",
            "password1": "a-long-unguessable-password",
            "password2": "a-long-unguessable-password",
            "usable_password": "true",
            "balance": "10.00",
        },
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "username": ["A user with that username already exists."]
    }
    assert User.objects.count() == 2
