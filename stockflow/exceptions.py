"""One error type and one exception handler, so every error is JSON.

Validation errors keep DRF's field -> messages form (400). Everything else is
`{"detail": "<human message>", "code": "<machine_code>"}` with its status.
"""

import logging

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError, IntegrityError, InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.serializers import as_serializer_error
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)


class ApplicationError(exceptions.APIException):
    """A domain error with a stable machine `code`; subclasses set the HTTP status."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "Bad request."
    default_code = "bad_request"

    def __init__(self, detail: str | None = None, code: str | None = None):
        super().__init__(detail or self.default_detail, code or self.default_code)


class NotFound(ApplicationError):
    status_code = status.HTTP_404_NOT_FOUND
    default_detail = "Not found."
    default_code = "not_found"


class Conflict(ApplicationError):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "Conflict."
    default_code = "conflict"


class ServiceUnavailable(ApplicationError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "A required backing service is unavailable. Try again shortly."
    default_code = "service_unavailable"


def _error_body(exc: exceptions.APIException) -> dict:
    detail = exc.detail
    code = exc.get_codes() if hasattr(exc, "get_codes") else exc.default_code
    if isinstance(detail, (list, dict)):
        # Only ValidationError carries structure; keep DRF's field -> messages form.
        return detail
    return {"detail": str(detail), "code": code if isinstance(code, str) else exc.default_code}


def exception_handler(exc, context):
    if isinstance(exc, DjangoValidationError):
        # Services and validators (e.g. password validation) raise Django's error: a 400.
        exc = exceptions.ValidationError(as_serializer_error(exc))
    elif isinstance(exc, Http404):
        exc = NotFound(str(exc) if str(exc) else None)
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, IntegrityError):
        logger.info("integrity error mapped to 409: %s", exc)
        exc = Conflict("The request conflicts with stored data.", "integrity_error")
    elif isinstance(exc, DataError):  # a value the database cannot hold: the input's fault
        exc = ApplicationError("A value is out of range for storage.", "data_error")
    elif isinstance(exc, (OperationalError, InterfaceError)):  # unreachable, not wrong
        logger.exception("database unavailable")
        exc = ServiceUnavailable("The database is unavailable. Try again shortly.", "database_down")

    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        return response
    response.data = _error_body(exc)
    return response


def json_error(status_code: int, detail: str, code: str) -> JsonResponse:
    return JsonResponse({"detail": detail, "code": code}, status=status_code)


def handler400(request, exception=None):
    return json_error(400, "Bad request.", "bad_request")


def handler403(request, exception=None):
    return json_error(403, "You do not have permission for this.", "permission_denied")


def handler404(request, exception=None):
    return json_error(404, "No route matches this URL.", "not_found")


def handler500(request):
    return json_error(500, "Internal server error.", "server_error")
