"""User operations: registration and operators' profile changes."""

from collections.abc import Iterable
from decimal import Decimal

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError
from django.db.transaction import atomic

from stockflow.cache import invalidate_on_commit, user_namespace

from .errors import DuplicateUsername
from .models import User


def user_register(
    *, username: str, balance: Decimal, password: str | None = None, staff: bool = False
) -> User:
    """Create a user with an opening balance and a token (`user.auth_token`).

    `staff` makes an operator: staff and superuser, for the admin and market data writes.
    """
    if User.objects.named(username).exists():  # the common case, without a failed insert
        raise DuplicateUsername(username=username)
    user = User(username=username, balance=balance, is_staff=staff, is_superuser=staff)
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
            user.issue_token()
    except IntegrityError as exc:
        # A concurrent registration of another spelling of the name won the race: the
        # unique index on the canonical name refused this one.
        raise DuplicateUsername(username=username) from exc
    return user


def user_update(*, user: User, fields: Iterable[str] | None = None) -> User:
    """Save an operator's change to an account's profile (name, email, flags, password).

    Only `fields` are written (None: every profile field). The balance and reservation are
    not profile fields and are never written here (User.save refuses): settlement may have
    moved cash since `user` was loaded, and writing back what was read would undo it.
    A new name that another account already has (in any spelling) is DuplicateUsername.
    Both the old and the new name's cached detail are dropped once the change commits.
    """
    try:
        with atomic():
            previous = User.objects.filter(pk=user.pk).values_list("username", flat=True).first()
            user.save(update_fields=None if fields is None else list(fields))
            names = (previous, user.username)
            invalidate_on_commit(*{user_namespace(name) for name in names if name})
    except IntegrityError as exc:
        if not User.objects.named(user.username).exclude(pk=user.pk).exists():
            raise
        raise DuplicateUsername(username=user.username) from exc
    return user
