"""App config for users."""

from django.apps import AppConfig


class UsersConfig(AppConfig):
    name = "users"
