"""Permission helpers: an account is readable and tradable by its owner and by staff."""

from rest_framework import permissions
from rest_framework.exceptions import PermissionDenied


def ensure_owner_or_staff(request, user_id: int | None = None, username: str | None = None):
    """Raise 403 unless the caller is staff or is the account named by id or username."""
    caller = request.user
    if caller.is_staff:
        return
    if (user_id is not None and caller.pk == user_id) or (
        username is not None and caller.get_username() == username
    ):
        return
    raise PermissionDenied("You may only access your own account.")


class IsStaffOrMarketDataFeed(permissions.BasePermission):
    """Market data writes: staff, or an account granted `stocks.add_stockdata`."""

    message = "Posting market data needs a staff account or the stocks.add_stockdata permission."

    def has_permission(self, request, view):
        user = request.user
        if not (user and user.is_authenticated):
            return False
        return user.is_staff or user.has_perm("stocks.add_stockdata")
