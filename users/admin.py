"""Admin for users: the Django user admin plus the cash balance, writing through the services."""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from .models import User
from .services import user_register, user_update


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = ("username", "email", "balance", "is_staff", "is_active", "created_at")
    list_filter = ("is_staff", "is_superuser", "is_active")
    search_fields = ("username", "email")
    fieldsets = (*DjangoUserAdmin.fieldsets, ("Trading", {"fields": ("balance", "created_at")}))
    add_fieldsets = (
        *DjangoUserAdmin.add_fieldsets,
        ("Trading", {"fields": ("balance",)}),
    )

    def get_readonly_fields(self, request, obj=None):
        # After registration only settlement moves cash, or the ledger would not add up.
        fields = ("created_at", "last_login", "date_joined")
        return fields if obj is None else (*fields, "balance")

    def save_model(self, request, obj, form, change):
        if change:
            user_update(user=obj)
            return
        data = form.cleaned_data
        registered = user_register(
            username=data["username"],
            balance=data["balance"],
            password=data["password1"] if data.get("set_usable_password", True) else None,
        )
        # The admin goes on with `obj` (related fields, the log entry): make it that row.
        vars(obj).update(vars(registered))
