"""Permission helpers: an account is readable and tradable by its owner and by staff."""

from rest_framework import permissions
from rest_framework.exceptions import PermissionDenied

from users.models import User

from .exceptions import NotFound


def _is_caller(request, user_id: int | None, username: str | None) -> bool:
    caller = request.user
    return (user_id is not None and caller.pk == user_id) or (
        username is not None and caller.get_username() == username
    )


def ensure_owner_or_staff(request, *, user_id: int | None = None, username: str | None = None):
    """403 unless the caller is staff or is the account named by id or username.

    Checked before any lookup, so a caller cannot learn which other accounts exist.
    """
    if not (request.user.is_staff or _is_caller(request, user_id, username)):
        raise PermissionDenied("You may only access your own account.")


def account_for(request, *, user_id: int | None = None, username: str | None = None) -> User:
    """The account named by id or username, if the caller may act on it (403, else 404)."""
    ensure_owner_or_staff(request, user_id=user_id, username=username)
    if _is_caller(request, user_id, username):
        return request.user  # authentication already loaded the row
    if user_id is not None:
        account = User.objects.filter(pk=user_id).first()
        missing = f"No user with id {user_id}."
    else:
        account = User.objects.filter(username=username).first()
        missing = f"No user '{username}'."
    if account is None:
        raise NotFound(missing, "unknown_user")
    return account


class IsStaffOrMarketDataFeed(permissions.BasePermission):
    """Market data writes: staff, or an account granted `stocks.add_stockdata`."""

    message = "Posting market data needs a staff account or the stocks.add_stockdata permission."

    def has_permission(self, request, view):
        user = request.user
        if not (user and user.is_authenticated):
            return False
        return user.is_staff or user.has_perm("stocks.add_stockdata")
