"""`/health/`: database, cache and broker checks; 503 only when the database is down."""

import time

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from drf_yasg import openapi
from drf_yasg.utils import swagger_auto_schema
from rest_framework.decorators import (
    api_view,
    authentication_classes,
    permission_classes,
    throttle_classes,
)
from rest_framework.response import Response

from .celery import app as celery_app


def _check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return "ok"


def _check_cache() -> str:
    key = "health:probe"
    value = str(time.time())
    cache.set(key, value, 10)
    # django-redis swallows errors (IGNORE_EXCEPTIONS): a dead Redis reads back None.
    return "ok" if cache.get(key) == value else "unavailable"


def _check_broker() -> str:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return "ok (in-process tasks)"
    with celery_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=1)
    return "ok"


def _run(check) -> str:
    try:
        return check()
    except Exception as exc:  # a health check reports failures, it never raises them
        return f"unavailable: {type(exc).__name__}"


HEALTH = openapi.Schema(
    title="Health",
    type=openapi.TYPE_OBJECT,
    properties={
        "status": openapi.Schema(type=openapi.TYPE_STRING, enum=["ok", "degraded", "down"]),
        "checks": openapi.Schema(
            type=openapi.TYPE_OBJECT,
            description="Each backing service: `ok...`, or `unavailable: <error>`.",
            additional_properties=openapi.Schema(type=openapi.TYPE_STRING),
        ),
    },
    required=["status", "checks"],
)


@swagger_auto_schema(
    method="get",
    operation_id="health",
    operation_summary="Health",
    operation_description="Never authenticated or throttled. `degraded` when the cache or the "
    "broker is down (the API still answers, more slowly); 503 `down` when the database is.",
    responses={
        200: openapi.Response(
            "Up (`ok`) or `degraded`.",
            HEALTH,
            examples={
                "application/json": {
                    "status": "ok",
                    "checks": {"database": "ok", "cache": "ok", "broker": "ok"},
                }
            },
        ),
        503: openapi.Response(
            "The database is unreachable.",
            HEALTH,
            examples={
                "application/json": {
                    "status": "down",
                    "checks": {
                        "database": "unavailable: OperationalError",
                        "cache": "ok",
                        "broker": "ok",
                    },
                }
            },
        ),
    },
    security=[],
)
@api_view(["GET"])
@authentication_classes([])
@permission_classes([])
@throttle_classes([])  # monitors poll it; it must never answer 429
def health(request):
    checks = {
        "database": _run(_check_database),
        "cache": _run(_check_cache),
        "broker": _run(_check_broker),
    }
    if not checks["database"].startswith("ok"):
        return Response({"status": "down", "checks": checks}, status=503)
    degraded = any(not value.startswith("ok") for value in checks.values())
    return Response({"status": "degraded" if degraded else "ok", "checks": checks})
