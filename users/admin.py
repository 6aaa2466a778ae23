"""Admin for users: the Django user admin plus the cash balance."""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from .models import User


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = ("username", "email", "balance", "is_staff", "is_active", "created_at")
    list_filter = ("is_staff", "is_superuser", "is_active")
    search_fields = ("username", "email")
    readonly_fields = ("created_at", "last_login", "date_joined")
    fieldsets = (*DjangoUserAdmin.fieldsets, ("Trading", {"fields": ("balance", "created_at")}))
    add_fieldsets = (
        *DjangoUserAdmin.add_fieldsets,
        ("Trading", {"fields": ("balance",)}),
    )
