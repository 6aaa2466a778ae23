"""User reads; the detail read is cached per user and invalidated after balance changes."""

from stockflow.cache import cached, user_namespace

from .models import User


def user_detail_cached(*, username: str) -> dict | None:
    """`{id, username, balance, created_at}` for `username`, or None when no such user."""

    def load():
        user = User.objects.filter(username=username).first()
        if user is None:
            return None
        return {
            "id": user.pk,
            "username": user.username,
            "balance": user.balance,
            "created_at": user.created_at,
        }

    return cached(user_namespace(username), "detail", load)
