"""Permission classes shared by the apps (account access rules live in `users.selectors`)."""

from rest_framework import permissions


class IsStaffOrMarketDataFeed(permissions.BasePermission):
    """Market data writes: staff, or an account granted `stocks.add_stockdata`."""

    message = "Posting market data needs a staff account or the stocks.add_stockdata permission."

    def has_permission(self, request, view):
        user = request.user
        if not (user and user.is_authenticated):
            return False
        return user.is_staff or user.has_perm("stocks.add_stockdata")
