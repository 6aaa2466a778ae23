"""`/` (and `/api/`): what this server is, and where its docs, health check and admin are."""

from django.urls import get_script_prefix
from drf_yasg import openapi
from drf_yasg.utils import swagger_auto_schema
from rest_framework.decorators import (
    api_view,
    authentication_classes,
    permission_classes,
    throttle_classes,
)
from rest_framework.response import Response

from . import __version__

NAME = "StockFlow"
# Paths from the site's root (behind a prefix, SCRIPT_NAME's), so they hold for any host.
LINKS = {
    "swagger": "swagger/",
    "schema": "swagger.json",
    "redoc": "redoc/",
    "health": "health/",
    "admin": "admin/",
}
INDEX = openapi.Schema(
    title="Index",
    type=openapi.TYPE_OBJECT,
    properties={
        "name": openapi.Schema(type=openapi.TYPE_STRING),
        "version": openapi.Schema(type=openapi.TYPE_STRING, description="StockFlow's release."),
        "links": openapi.Schema(
            type=openapi.TYPE_OBJECT,
            description="Paths of the Swagger UI, its JSON schema, ReDoc, the health check "
            "and the Django admin.",
            properties={name: openapi.Schema(type=openapi.TYPE_STRING) for name in LINKS},
            required=list(LINKS),
        ),
    },
    required=["name", "version", "links"],
)


@swagger_auto_schema(
    method="get",
    operation_id="index",
    operation_summary="Index",
    operation_description="Never authenticated or throttled; also served at `/api/`. "
    "The API's own routes are the operations listed here.",
    responses={
        200: openapi.Response(
            "The server's name and version, and where to go next.",
            INDEX,
            examples={
                "application/json": {
                    "name": NAME,
                    "version": __version__,
                    "links": {name: f"/{path}" for name, path in LINKS.items()},
                }
            },
        ),
    },
    security=[],
)
@api_view(["GET"])
@authentication_classes([])
@permission_classes([])
@throttle_classes([])
def index(request):
    prefix = get_script_prefix()
    links = {name: f"{prefix}{path}" for name, path in LINKS.items()}
    return Response({"name": NAME, "version": __version__, "links": links})
