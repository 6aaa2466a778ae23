"""One inclusive time-range filter for every list that takes `[start, end]` timestamps.

Quote history (`?start=&end=`) and a user's transactions (`?start_timestamp=&end_timestamp=`
and the path form) differ only in the names of their bounds.
"""

from datetime import datetime

from django.db.models import QuerySet
from rest_framework import serializers

from .fields import TimestampField


class TimeRangeSerializer(serializers.Serializer):
    """Optional `start`/`end` bounds, both inclusive; a bare end date covers that whole day.

    Subclasses rename the bounds with `start_name` and `end_name`.
    """

    start_name = "start"
    end_name = "end"

    def get_fields(self):
        return {
            self.start_name: TimestampField(required=False),
            self.end_name: TimestampField(required=False, end_of_day=True),
        }

    def validate(self, attrs):
        start, end = attrs.get(self.start_name), attrs.get(self.end_name)
        if start and end and start > end:
            raise serializers.ValidationError(
                {self.end_name: [f"{self.end_name} must not be before {self.start_name}."]}
            )
        return attrs

    @property
    def bounds(self) -> dict:
        """`{"start": ..., "end": ...}` (None where not given), for `within()`."""
        data = self.validated_data
        return {"start": data.get(self.start_name), "end": data.get(self.end_name)}


def within(
    queryset: QuerySet,
    *,
    start: datetime | None,
    end: datetime | None,
    field: str = "timestamp",
) -> QuerySet:
    """The rows whose `field` lies in [start, end]; an absent bound does not limit."""
    if start is not None:
        queryset = queryset.filter(**{f"{field}__gte": start})
    if end is not None:
        queryset = queryset.filter(**{f"{field}__lte": end})
    return queryset
