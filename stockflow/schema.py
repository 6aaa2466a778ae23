"""The Swagger schema's shared parts, so /swagger.json documents what the API really answers.

- `Error` and `ValidationError`, the two error bodies the exception handler produces, and
  `errors()`, the documented error responses with real examples that every view lists;
- `SchemaGenerator`: path parameters as the URL patterns and views accept them;
- `AutoSchema`: fields from `stockflow.fields` describe themselves, `paginated=True` wraps
  a 2xx in the limit/offset envelope, `one_or_many=N` states a body (and its 201) that
  is one object or a list of 1 to N of them, and every operation lists the errors any
  request may get (`EVERY_REQUEST`: an oversized request line or header; 415 for a charset
  other than UTF-8).
"""

from drf_yasg import openapi
from drf_yasg.generators import OpenAPISchemaGenerator
from drf_yasg.inspectors import FieldInspector, NotHandled, SwaggerAutoSchema
from rest_framework.status import is_success

from .errors import DomainError
from .fields import TICKER_INPUT_PATTERN, TIMESTAMP_DESCRIPTION, TIMESTAMP_FORMAT

_DEFINITIONS = openapi.ReferenceResolver(openapi.SCHEMA_DEFINITIONS, force_init=True)
STRING = openapi.Schema(type=openapi.TYPE_STRING)
MESSAGES = openapi.Schema(type=openapi.TYPE_ARRAY, items=STRING)


def definition(name: str) -> openapi.SchemaRef:
    """A `$ref` to `#/definitions/<name>`; the generator adds the shared ones below."""
    return openapi.SchemaRef(_DEFINITIONS, name, ignore_unresolved=True)


ERROR = openapi.Schema(
    title="Error",
    description="Every error except a validation error.",
    type=openapi.TYPE_OBJECT,
    properties={
        "detail": openapi.Schema(type=openapi.TYPE_STRING, description="For people."),
        "code": openapi.Schema(type=openapi.TYPE_STRING, description="For programs; stable."),
    },
    required=["detail", "code"],
    example={"detail": "Not found.", "code": "not_found"},
)

# A field's messages (an array), or in a list body the refused item's field -> messages (an
# object): no `type`, since Swagger 2.0 cannot say "array or object".
_FIELD_ERRORS = openapi.Schema(type=openapi.TYPE_ARRAY, items=STRING)
del _FIELD_ERRORS["type"]
_FIELD_ERRORS.additional_properties = MESSAGES
VALIDATION_ERROR = openapi.Schema(
    title="ValidationError",
    description="DRF's form: each refused field names its messages (`non_field_errors` for the "
    "body as a whole; in a list body, the refused items by index). A body that is not JSON at "
    "all gets the `Error` form (`code: parse_error`).",
    type=openapi.TYPE_OBJECT,
    properties={"detail": STRING, "code": STRING},
    additional_properties=_FIELD_ERRORS,
    example={"transaction_volume": ["Ensure this value is greater than or equal to 1."]},
)
SHARED_DEFINITIONS = {"Error": ERROR, "ValidationError": VALIDATION_ERROR}

RETRY_AFTER = {"Retry-After": {"type": openapi.TYPE_INTEGER, "description": "Seconds to wait."}}
# status -> (description, example body); views pass their own for the errors they name.
ERRORS = {
    400: (
        "Malformed input: a field, a query parameter, a path parameter or the JSON itself.",
        {"transaction_volume": ["Ensure this value is greater than or equal to 1."]},
    ),
    401: (
        "No token, or an unknown one (`Authorization: Token <key>`).",
        {"detail": "Authentication credentials were not provided.", "code": "not_authenticated"},
    ),
    403: (
        "Not allowed: another user's account, or staff only.",
        {"detail": "You may only access your own account.", "code": "permission_denied"},
    ),
    404: ("Unknown resource.", {"detail": "Not found.", "code": "not_found"}),
    409: (
        "Conflicts with stored data.",
        {"detail": "The request conflicts with stored data.", "code": "integrity_error"},
    ),
    410: (
        "Removed on purpose: events older than the retention were pruned.",
        {"detail": "Events up to seq 1200 were pruned.", "code": "events_pruned"},
    ),
    413: (
        "The body is over the size limit.",
        {"detail": "The request body exceeds 2621440 bytes.", "code": "request_too_large"},
    ),
    414: (
        "The request line (method, path and query string) is over the size limit.",
        {"detail": "The request line exceeds 4094 bytes.", "code": "uri_too_long"},
    ),
    415: (
        "The body is not `application/json` (`unsupported_media_type`), or the Content-Type "
        "names a charset other than UTF-8 (`unsupported_charset`).",
        {
            "detail": 'Unsupported media type "text/plain" in request.',
            "code": "unsupported_media_type",
        },
    ),
    429: (
        "Throttled: too many requests; retry after `Retry-After` seconds.",
        {"detail": "Request was throttled. Expected available in 12 seconds.", "code": "throttled"},
    ),
    431: (
        "A request header (name and value) is over the size limit.",
        {"detail": "The Cookie header exceeds 8190 bytes.", "code": "header_too_large"},
    ),
    503: (
        "The database is unreachable; try again shortly.",
        {"detail": "The database is unavailable. Try again shortly.", "code": "database_down"},
    ),
}
# Every route but /health/ authenticates a token when one is sent, is throttled and reads the
# database, so a bad token (401), too many requests (429) and a dead database (503) apply to all.
COMMON = (401, 429, 503)
ACCOUNT = (*COMMON, 403)  # an account's own routes: the owner or staff
BODY = (400, 413, 415)
# Refused by stockflow.middleware before any view runs: AutoSchema adds them to every operation.
EVERY_REQUEST = (414, 431)
# Any request whose Content-Type names a charset other than UTF-8, a body or not: an operation
# without a body of its own (BODY) documents only that.
CHARSET_REFUSED = (
    "The Content-Type names a charset other than UTF-8: requests are read as UTF-8 only.",
    {
        "detail": "Requests are read as UTF-8 only: send charset=utf-8, or no charset.",
        "code": "unsupported_charset",
    },
)


def error_response(
    status: int, description: str | None = None, example: dict | None = None
) -> openapi.Response:
    default_description, default_example = ERRORS[status]
    return openapi.Response(
        description or default_description,
        definition("ValidationError" if status == 400 else "Error"),
        examples={"application/json": example or default_example},
        **({"headers": RETRY_AFTER} if status == 429 else {}),
    )


def example_of(error: DomainError) -> dict:
    """The body the exception handler answers for `error`: its message is written once."""
    return {"detail": error.detail, "code": error.code}


def errors(*statuses: int) -> dict[int, openapi.Response]:
    return {status: error_response(status) for status in statuses}


# --- path parameters ---------------------------------------------------------------------------

MAX_ID = 10**18 - 1  # the URL patterns take 1-18 digits


def _id_parameter(name: str, description: str) -> openapi.Parameter:
    return openapi.Parameter(
        name,
        openapi.IN_PATH,
        description,
        required=True,
        type=openapi.TYPE_INTEGER,
        minimum=0,
        maximum=MAX_ID,
    )


def _timestamp_parameter(name: str, description: str) -> openapi.Parameter:
    return openapi.Parameter(
        name,
        openapi.IN_PATH,
        f"{description} {TIMESTAMP_DESCRIPTION}",
        required=True,
        type=openapi.TYPE_STRING,
        format=TIMESTAMP_FORMAT,
        **{"x-example": "2025-01-02"},
    )


PATH_PARAMETERS = {
    "username": openapi.Parameter(
        "username",
        openapi.IN_PATH,
        "The account's username.",
        required=True,
        type=openapi.TYPE_STRING,
        pattern=r"^[^/\x00]+$",
        **{"x-example": "alice"},
    ),
    "user_id": _id_parameter("user_id", "The account's id."),
    "transaction_id": _id_parameter("transaction_id", "The transaction's id."),
    "ticker": openapi.Parameter(
        "ticker",
        openapi.IN_PATH,
        "Ticker, any case: 1-10 characters of A-Z 0-9 . -",
        required=True,
        type=openapi.TYPE_STRING,
        pattern=TICKER_INPUT_PATTERN,
        **{"x-example": "AAPL"},
    ),
    "start_timestamp": _timestamp_parameter("start_timestamp", "From (inclusive)."),
    "end_timestamp": _timestamp_parameter(
        "end_timestamp", "To (inclusive; a bare date means the end of that day)."
    ),
}


class SchemaGenerator(OpenAPISchemaGenerator):
    """Adds the shared definitions and states path parameters as the routes accept them.

    drf-yasg would copy each lookup regex as an unanchored `pattern` of a string, which
    JSON Schema reads as "contains": `[0-9]{1,18}` would admit `abc1`.
    """

    def get_path_parameters(self, path, view_cls):
        parameters = super().get_path_parameters(path, view_cls)
        return [PATH_PARAMETERS.get(parameter.name, parameter) for parameter in parameters]

    def get_schema(self, request=None, public=False):
        schema = super().get_schema(request, public)
        schema.definitions.update(SHARED_DEFINITIONS)
        return schema


# --- operations ------------------------------------------------------------------------------


class SelfDescribingFieldInspector(FieldInspector):
    """Fields with an `openapi_schema()` (see stockflow.fields) state their own schema."""

    def field_to_swagger_object(self, field, swagger_object_type, use_references, **kwargs):
        describe = getattr(field, "openapi_schema", None)
        if describe is None or swagger_object_type is openapi.Items:
            return NotHandled
        in_body = swagger_object_type is openapi.Schema
        stated = describe(in_body=in_body)
        types = stated.pop("type")
        if field.help_text and "description" in stated:
            stated["description"] = f"{field.help_text} {stated['description']}"
        if not in_body and "example" in stated:  # Swagger 2.0 parameters have no `example`
            stated["x-example"] = stated.pop("example")
        if not in_body and not field.required:
            # A query serializer reads `?start=` as not given at all, as DRF does for forms.
            stated["allowEmptyValue"] = True
        make, _ = self._get_partial_types(field, swagger_object_type, use_references, **kwargs)
        # drf-yasg insists on a type; a value of more than one JSON type has none.
        result = make(type=openapi.TYPE_STRING, **stated)
        if types is None:
            del result["type"]
        else:
            result.type = types
        return result


class AutoSchema(SwaggerAutoSchema):
    """Reads two extra `swagger_auto_schema` keys: `paginated` and `one_or_many`."""

    field_inspectors = [SelfDescribingFieldInspector, *SwaggerAutoSchema.field_inspectors]

    def get_response_serializers(self):
        responses = super().get_response_serializers()
        for status in EVERY_REQUEST:
            responses.setdefault(str(status), error_response(status))
        responses.setdefault("415", error_response(415, *CHARSET_REFUSED))
        return responses

    def should_page(self):
        # Explicit: drf-yasg's guess pages every `list` action, including unpaged ones.
        paginated = self.overrides.get("paginated", False)
        return paginated and getattr(self.view, "paginator", None) is not None

    def get_request_body_schema(self, serializer):
        schema = super().get_request_body_schema(serializer)
        if self.overrides.get("one_or_many"):
            schema = self._one_or_many(schema)
        return schema

    def get_response_schemas(self, response_serializers):
        responses = super().get_response_schemas(response_serializers)
        for status, response in responses.items():
            schema = response.get("schema")
            if schema is None or not is_success(int(status)):
                continue
            if self.should_page():
                response.schema = self.get_paginated_response(schema)
            elif self.overrides.get("one_or_many"):
                response.schema = self._one_or_many(schema)
        return responses

    def _one_or_many(self, schema):
        """`schema` (an object) or a list of 1 to `one_or_many` of them, in one JSON Schema.

        Without a `type`, `properties` and `required` constrain an object and `items` an array.
        """
        target = openapi.resolve_ref(schema, self.components)
        name = schema.get("$ref", "#/Item").rsplit("/", 1)[-1]
        union = openapi.Schema(
            title=f"{name}OrList",
            description=f"One object, or a list of 1 to {self.overrides['one_or_many']:,} "
            "(answered in the same form).",
            type=openapi.TYPE_OBJECT,
            properties=target.get("properties"),
            required=target.get("required"),
            example=target.get("example"),
        )
        del union["type"]  # Swagger 2.0 cannot say "object or array"
        union["items"] = schema
        union["minItems"] = 1
        union["maxItems"] = self.overrides["one_or_many"]
        return union
