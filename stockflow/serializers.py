"""Output serializers whose fields are built once per class.

DRF builds a ModelSerializer's fields again for every instance it creates: for the 21
fields of a transaction that costs more CPU than the request's database queries. A
`ReadOnlyModelSerializer` builds them on first use and keeps them on the class, then
represents each object with those fields exactly as DRF would. Only for fields whose
output needs no per-request context (no hyperlinks, no request-dependent methods); the
schema generator still sees ordinary, per-instance fields.
"""

from rest_framework import serializers
from rest_framework.relations import PKOnlyObject


class ReadOnlyModelSerializer(serializers.ModelSerializer):
    @classmethod
    def _shared_fields(cls, instance) -> list:
        fields = cls.__dict__.get("_readable")
        if fields is None:  # a race builds them twice, harmlessly
            fields = list(instance._readable_fields)
            cls._readable = fields
        return fields

    def to_representation(self, instance):
        representation = {}
        for field in self._shared_fields(self):
            attribute = field.get_attribute(instance)
            value = attribute.pk if isinstance(attribute, PKOnlyObject) else attribute
            representation[field.field_name] = (
                None if value is None else field.to_representation(attribute)
            )
        return representation
