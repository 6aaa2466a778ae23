"""Admin for quotes; any change invalidates the cached latest quotes."""

from django.contrib import admin

from stockflow.cache import QUOTES_NAMESPACE, invalidate_on_commit

from .models import StockData


@admin.register(StockData)
class StockDataAdmin(admin.ModelAdmin):
    list_display = ("ticker", "timestamp", "open_price", "high", "low", "close_price", "volume")
    list_filter = ("ticker",)
    search_fields = ("ticker",)
    date_hierarchy = "timestamp"
    ordering = ("ticker", "-timestamp")

    def save_model(self, request, obj, form, change):
        obj.ticker = obj.ticker.upper()
        super().save_model(request, obj, form, change)
        invalidate_on_commit(QUOTES_NAMESPACE)

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        invalidate_on_commit(QUOTES_NAMESPACE)

    def delete_queryset(self, request, queryset):
        super().delete_queryset(request, queryset)
        invalidate_on_commit(QUOTES_NAMESPACE)
