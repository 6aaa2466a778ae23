"""User operations: registration."""

from decimal import Decimal

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError
from django.db.transaction import atomic
from rest_framework.authtoken.models import Token

from stockflow.exceptions import Conflict

from .models import User


def user_register(*, username: str, balance: Decimal, password: str | None = None) -> User:
    """Create a user with an opening balance and a token (`user.auth_token`)."""
    if User.objects.filter(username__iexact=username).exists():
        raise Conflict(f"Username '{username}' is already taken.", "duplicate_username")
    user = User(username=username, balance=balance)
    if password:
        try:
            validate_password(password, user)
        except ValidationError as exc:  # name the field, so the API answers 400 {"password": ...}
            raise ValidationError({"password": exc.messages}) from exc
        user.set_password(password)
    else:
        user.set_unusable_password()
    try:
        with atomic():
            user.save()
            Token.objects.create(user=user)
    except IntegrityError as exc:  # a concurrent registration won the race
        raise Conflict(f"Username '{username}' is already taken.", "duplicate_username") from exc
    return user
