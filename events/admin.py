"""The outbox in the admin: read-only, for operators tracing what happened and what was relayed."""

from django.contrib import admin

from .models import Event


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ("id", "account", "seq", "type", "created_at", "relayed_at")
    list_filter = ("type",)
    search_fields = ("account__username",)
    list_select_related = ("account",)
    ordering = ("-id",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
