"""The one exception handler: every error is JSON, and only here do errors get a status.

Validation errors keep DRF's field -> messages form (400). Everything else is
`{"detail": "<human message>", "code": "<machine_code>"}` with its status. Domain errors
(`stockflow.errors`) get theirs from their kind; database errors from whose fault they are.
"""

import logging

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError, IntegrityError, InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from .errors import Conflict, DomainError, Gone, InvalidInput, NotAllowed, NotFound, TooMany

logger = logging.getLogger(__name__)

STATUS_OF_KIND = {
    InvalidInput: status.HTTP_400_BAD_REQUEST,
    NotAllowed: status.HTTP_403_FORBIDDEN,
    NotFound: status.HTTP_404_NOT_FOUND,
    Conflict: status.HTTP_409_CONFLICT,
    Gone: status.HTTP_410_GONE,
    TooMany: status.HTTP_429_TOO_MANY_REQUESTS,
}


def status_of(exc: DomainError) -> int:
    for kind, code in STATUS_OF_KIND.items():
        if isinstance(exc, kind):
            return code
    return status.HTTP_400_BAD_REQUEST


def _error(status_code: int, detail: str, code: str) -> Response:
    set_rollback()
    return Response({"detail": detail, "code": code}, status=status_code)


def _domain_error_response(exc: DomainError) -> Response:
    if exc.field is not None:  # about one field: answered like any validation error
        set_rollback()
        return Response({exc.field: [exc.detail]}, status=status.HTTP_400_BAD_REQUEST)
    return _error(status_of(exc), exc.detail, exc.code)


def _database_error_response(exc: Exception) -> Response:
    if isinstance(exc, IntegrityError):
        logger.info("integrity error mapped to 409: %s", exc)
        return _error(409, "The request conflicts with stored data.", "integrity_error")
    if isinstance(exc, DataError):  # a value the database cannot hold: the input's fault
        return _error(400, "A value is out of range for storage.", "data_error")
    logger.exception("database unavailable")  # unreachable, not wrong
    return _error(503, "The database is unavailable. Try again shortly.", "database_down")


def _error_body(exc: exceptions.APIException) -> dict:
    detail = exc.detail
    code = exc.get_codes()
    if isinstance(detail, (list, dict)):
        # Only ValidationError carries structure; keep DRF's field -> messages form.
        return detail
    return {"detail": str(detail), "code": code if isinstance(code, str) else exc.default_code}


def exception_handler(exc, context):
    if isinstance(exc, DomainError):
        return _domain_error_response(exc)
    if isinstance(exc, (IntegrityError, DataError, OperationalError, InterfaceError)):
        return _database_error_response(exc)
    if isinstance(exc, DjangoValidationError):
        # Validators (e.g. password validation) raise Django's error: a 400.
        exc = exceptions.ValidationError(as_serializer_error(exc))
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or None, "not_found")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

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
