"""Admin for transactions and positions: read-only, since only settlement may change them."""

from django.contrib import admin

from .models import Position, Transaction


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Transaction)
class TransactionAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "user",
        "transaction_type",
        "ticker",
        "transaction_volume",
        "unit_price",
        "transaction_price",
        "status",
        "failure_reason",
        "timestamp",
        "settled_at",
    )
    list_filter = ("status", "transaction_type", "ticker", "failure_reason")
    search_fields = ("=id", "user__username", "ticker")
    date_hierarchy = "timestamp"
    list_select_related = ("user",)


@admin.register(Position)
class PositionAdmin(ReadOnlyAdmin):
    list_display = ("user", "ticker", "quantity", "average_cost", "updated_at")
    list_filter = ("ticker",)
    search_fields = ("user__username", "ticker")
    list_select_related = ("user",)
