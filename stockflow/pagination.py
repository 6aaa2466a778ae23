"""Limit/offset pagination with the page size and its cap taken from settings."""

from django.conf import settings
from rest_framework import pagination


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    default_limit = settings.PAGE_SIZE
    max_limit = settings.MAX_PAGE_SIZE
