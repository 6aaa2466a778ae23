"""Limit/offset pagination with the page size and its cap taken from settings.

Unlike DRF's, a malformed `limit` or `offset` is a 400 rather than silently the
default: `?limit=abc` is a client bug worth reporting, and the schema says integer. An
empty one (`?limit=`) is the same as none, as for every other query parameter.
"""

import re

from django.conf import settings
from rest_framework import pagination
from rest_framework.exceptions import ValidationError

# ASCII digits only (int() would take "٣" and "1_0"), at most 18 like the ids in the URLs.
WHOLE_NUMBER = re.compile(r"[0-9]{1,18}")
MAX_WHOLE_NUMBER = 10**18 - 1


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    default_limit = settings.PAGE_SIZE
    max_limit = settings.MAX_PAGE_SIZE
    limit_query_description = (
        f"Number of results per page, at least 1 (default {settings.PAGE_SIZE}; larger values are "
        f"capped at {settings.MAX_PAGE_SIZE})."
    )
    offset_query_description = "Number of results to skip (default 0)."

    def _whole_number(self, request, name: str, *, minimum: int) -> int | None:
        raw = request.query_params.get(name)
        if not raw:
            return None
        if not WHOLE_NUMBER.fullmatch(raw) or int(raw) < minimum:
            raise ValidationError({name: [f"Enter a whole number >= {minimum}."]})
        return int(raw)

    def get_limit(self, request):
        limit = self._whole_number(request, self.limit_query_param, minimum=1)
        return self.default_limit if limit is None else min(limit, self.max_limit)

    def get_offset(self, request):
        return self._whole_number(request, self.offset_query_param, minimum=0) or 0

    def get_schema_operation_parameters(self, view):
        limit, offset = super().get_schema_operation_parameters(view)
        limit["schema"]["minimum"] = 1
        offset["schema"]["minimum"] = 0
        for parameter in (limit, offset):
            parameter["schema"]["maximum"] = MAX_WHOLE_NUMBER
            parameter["schema"]["allowEmptyValue"] = True
        return [limit, offset]
