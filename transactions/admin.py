"""Admin for transactions and positions: read-only, since only settlement may change them;
and transfers, which staff may add (through the service) but never change."""

from django import forms
from django.contrib import admin, messages

from stockflow.errors import DomainError

from .models import Position, Transaction, Transfer
from .services import transaction_cancel, transfer_create


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
    list_filter = ("status", "order_type", "transaction_type", "ticker", "failure_reason")
    search_fields = ("=id", "user__username", "ticker")
    date_hierarchy = "timestamp"
    list_select_related = ("user",)
    actions = ["cancel_open_orders"]

    def get_list_display(self, request):
        return (*self.list_display[:3], "order_type", *self.list_display[3:], "limit_price")

    @admin.action(description="Cancel the selected open or pending orders")
    def cancel_open_orders(self, request, queryset):
        cancelled, refused = 0, []
        for txn in queryset.filter(status__in=["open", "pending"]).order_by("id"):
            try:
                transaction_cancel(transaction=txn)
                cancelled += 1
            except DomainError as exc:  # filled or expired meanwhile
                refused.append(exc.detail)
        self.message_user(request, f"Cancelled {cancelled} order(s).", messages.SUCCESS)
        for reason in refused:
            self.message_user(request, reason, messages.WARNING)


@admin.register(Position)
class PositionAdmin(ReadOnlyAdmin):
    list_display = ("user", "ticker", "quantity", "average_cost", "updated_at")
    list_filter = ("ticker",)
    search_fields = ("user__username", "ticker")
    list_select_related = ("user",)


class TransferForm(forms.ModelForm):
    """Staff pick the account, the direction and the amount; the service does the rest."""

    class Meta:
        model = Transfer
        fields = ("user", "direction", "amount")

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        # The service decides under the user's lock, so it runs here, where a refusal (the
        # buying power, the amount) can still be shown on the form; save_model keeps its row.
        try:
            self.transfer = transfer_create(
                user=data["user"], direction=data["direction"], amount=data["amount"]
            )
        except DomainError as exc:
            self.add_error(exc.field, exc.detail)  # field None: the form as a whole
        return data


@admin.register(Transfer)
class TransferAdmin(admin.ModelAdmin):
    form = TransferForm
    list_display = ("id", "user", "direction", "amount", "balance_after", "created_at")
    list_filter = ("direction",)
    search_fields = ("=id", "user__username")
    date_hierarchy = "created_at"
    list_select_related = ("user",)
    autocomplete_fields = ("user",)

    def get_fields(self, request, obj=None):
        if obj is None:
            return TransferForm.Meta.fields
        return ("user", "direction", "amount", "balance_after", "created_at", "idempotency_key")

    def has_change_permission(self, request, obj=None):
        return False  # a ledger row is never edited: a correction is another transfer

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        # The admin goes on with `obj` (the log entry, the redirect): make it the stored row.
        vars(obj).update(vars(form.transfer))
