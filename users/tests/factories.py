"""Factories for users (with their API token)."""

from decimal import Decimal

import factory
from rest_framework.authtoken.models import Token

from users.models import User


class UserFactory(factory.django.DjangoModelFactory[User]):
    class Meta:
        model = User
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"trader{n}")
    balance = Decimal("10000.00")
    password = factory.django.Password("s3cret-pass-word")

    @factory.post_generation
    def token(obj, create, extracted, **kwargs):
        if create:
            Token.objects.get_or_create(user=obj)
