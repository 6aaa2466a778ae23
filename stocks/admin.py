"""Admin for quotes."""

from django.contrib import admin

from .models import StockData


@admin.register(StockData)
class StockDataAdmin(admin.ModelAdmin):
    list_display = ("ticker", "timestamp", "open_price", "high", "low", "close_price", "volume")
    list_filter = ("ticker",)
    search_fields = ("ticker",)
    date_hierarchy = "timestamp"
    ordering = ("ticker", "-timestamp")
