"""Admin for quotes: every add, correction and deletion goes through the stocks services."""

from django import forms
from django.contrib import admin

from stockflow.errors import DomainError
from stockflow.text import upper_ascii

from .models import StockData
from .services import quote_timestamp_check, quote_update, quotes_delete, quotes_ingest

QUOTE_FIELDS = ("ticker", "open_price", "close_price", "high", "low", "volume", "timestamp")


class QuoteForm(forms.ModelForm):
    class Meta:
        model = StockData
        fields = QUOTE_FIELDS

    def clean_ticker(self):
        # As the service will store it, so the form's unique check sees the stored form.
        return upper_ascii(self.cleaned_data["ticker"])

    def clean_timestamp(self):
        timestamp = self.cleaned_data["timestamp"]
        try:
            quote_timestamp_check(timestamp=timestamp)
        except DomainError as exc:
            raise forms.ValidationError(exc.detail, code=exc.code) from exc
        return timestamp


@admin.register(StockData)
class StockDataAdmin(admin.ModelAdmin):
    form = QuoteForm
    list_display = ("ticker", "timestamp", "open_price", "high", "low", "close_price", "volume")
    list_filter = ("ticker",)
    search_fields = ("ticker",)
    date_hierarchy = "timestamp"
    ordering = ("ticker", "-timestamp")

    def save_model(self, request, obj, form, change):
        fields = {name: form.cleaned_data[name] for name in QUOTE_FIELDS}
        if change:
            quote_update(quote=StockData.objects.get(pk=obj.pk), **fields)
        else:
            obj.pk = quotes_ingest(quotes=[fields])[0].pk

    def delete_model(self, request, obj):
        quotes_delete(quotes=StockData.objects.filter(pk=obj.pk))

    def delete_queryset(self, request, queryset):
        quotes_delete(quotes=queryset)
