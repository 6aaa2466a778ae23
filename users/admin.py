"""Admin for users: the Django user admin plus the cash balance, writing through the services."""

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm

from stockflow.text import canonical_username

from .models import USERNAME_MAX_LENGTH, User
from .services import user_register, user_update


class OneAccountPerName:
    """A name that another account has in any spelling is a form error, not a 500 from the
    unique index (Django's forms compare only the exact name, or its case)."""

    def clean_username(self):
        username = self.cleaned_data.get("username")
        if not username:
            return username
        if len(canonical_username(username)) > USERNAME_MAX_LENGTH:
            raise forms.ValidationError(
                f"Ensure this value has at most {USERNAME_MAX_LENGTH} characters once case-folded."
            )
        if User.objects.named(username).exclude(pk=self.instance.pk).exists():
            raise forms.ValidationError(self.instance.unique_error_message(User, ["username"]))
        return username


class UserAddForm(OneAccountPerName, AdminUserCreationForm):
    class Meta(AdminUserCreationForm.Meta):
        model = User


class UserEditForm(OneAccountPerName, UserChangeForm):
    class Meta(UserChangeForm.Meta):
        model = User


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    form = UserEditForm
    add_form = UserAddForm
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
            # Only what the operator changed: the rest of the row (the balance above all) may
            # have moved since the form loaded it. Many-to-many fields are saved by the form.
            columns = {f.name for f in User._meta.concrete_fields}
            user_update(user=obj, fields=[name for name in form.changed_data if name in columns])
            return
        data = form.cleaned_data
        registered = user_register(
            username=data["username"],
            balance=data["balance"],
            password=data["password1"] if data.get("set_usable_password", True) else None,
        )
        # The admin goes on with `obj` (related fields, the log entry): make it that row.
        vars(obj).update(vars(registered))
