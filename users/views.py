"""User endpoints: open registration, staff listing, own-account detail, token login."""

from django.contrib import admin
from drf_yasg import openapi
from drf_yasg.utils import swagger_auto_schema
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.exceptions import Throttled, ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from stockflow.exceptions import json_error
from stockflow.parsers import DecimalJSONParser
from stockflow.responses import JSONBytes
from stockflow.schema import ACCOUNT, BODY, COMMON, error_response, errors, example_of
from stockflow.throttling import FailedLoginThrottle

from .errors import DuplicateUsername, UnknownUser
from .models import User
from .selectors import account_check_access, user_detail_json
from .serializers import UserCreatedSerializer, UserCreateSerializer, UserSerializer
from .services import user_register

USERNAME_REGEX = r"[^/\x00]+"  # NUL never reaches the database (PostgreSQL refuses it)
STAFF_ONLY = {
    "detail": "You do not have permission to perform this action.",
    "code": "permission_denied",
}
UNKNOWN_USER = error_response(404, "No such user.", example_of(UnknownUser(username="bob")))


class UserViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    queryset = User.objects.order_by("id")
    serializer_class = UserSerializer
    lookup_field = "username"
    lookup_value_regex = USERNAME_REGEX

    def get_permissions(self):
        if self.action == "create":
            return [permissions.AllowAny()]
        if self.action == "list":
            return [permissions.IsAdminUser()]
        return [permissions.IsAuthenticated()]

    @swagger_auto_schema(
        operation_id="users_register",
        operation_summary="Register",
        operation_description="Open registration. Returns the new user's API token once; "
        "`password` is optional (needed only for `POST /auth/token/`). Duplicate username: 409, "
        "also for another spelling of a taken name (equal once NFKC-normalised and case-folded).",
        request_body=UserCreateSerializer,
        responses={
            201: openapi.Response("Registered; `token` is shown only now.", UserCreatedSerializer),
            **errors(*BODY, *COMMON),
            409: error_response(
                409,
                "The username is taken.",
                example_of(DuplicateUsername(username="alice")),
            ),
        },
        security=[],
    )
    def create(self, request):
        serializer = UserCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = user_register(**serializer.validated_data)
        return Response(UserCreatedSerializer(user).data, status=status.HTTP_201_CREATED)

    @swagger_auto_schema(
        operation_id="users_list",
        operation_summary="List users (staff)",
        operation_description="Oldest account first. Paginated with `limit`/`offset`.",
        paginated=True,
        responses={
            200: openapi.Response("A page of accounts.", UserSerializer(many=True)),
            **errors(400, *COMMON),
            403: error_response(403, "Staff only.", STAFF_ONLY),
        },
    )
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @swagger_auto_schema(
        operation_id="users_read",
        operation_summary="Account detail (owner or staff)",
        responses={
            200: openapi.Response("The account.", UserSerializer),
            **errors(*ACCOUNT),
            404: UNKNOWN_USER,
        },
    )
    def retrieve(self, request, username=None):
        account_check_access(caller=request.user, username=username)
        detail = user_detail_json(username=username, represent=lambda d: UserSerializer(d).data)
        return JSONBytes(detail)


TOKEN_RESPONSE = openapi.Schema(
    title="Token",
    type=openapi.TYPE_OBJECT,
    properties={"token": openapi.Schema(type=openapi.TYPE_STRING)},
    required=["token"],
    example={"token": "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"},
)
LOGIN_REFUSED = {"non_field_errors": ["Unable to log in with provided credentials."]}


class ObtainTokenView(ObtainAuthToken):
    """DRF's token view, but parsing JSON like every other route: bad JSON is a 400, not a 500."""

    parser_classes = [DecimalJSONParser, FormParser, MultiPartParser]

    @swagger_auto_schema(
        operation_id="auth_token",
        operation_summary="Obtain the API token",
        operation_description="For users who registered with a password. Failed logins are "
        "counted per client address; past the limit (10 a minute by default) the answer is 429 "
        "with `Retry-After` until the oldest failure leaves the window.",
        request_body=AuthTokenSerializer,
        responses={
            200: openapi.Response("The token.", TOKEN_RESPONSE),
            **errors(*BODY, *COMMON),
            400: error_response(400, "Wrong username or password, or malformed.", LOGIN_REFUSED),
            429: error_response(
                429,
                "Too many failed logins from this address; retry after `Retry-After` seconds.",
                {
                    "detail": "Request was throttled. Expected available in 60 seconds.",
                    "code": "throttled",
                },
            ),
        },
        security=[],
    )
    def post(self, request, *args, **kwargs):
        throttle = FailedLoginThrottle()
        if throttle.is_blocked(request):
            raise Throttled(throttle.retry_after())
        serializer = self.get_serializer(data=request.data)
        if not serializer.is_valid():
            throttle.record_failure(request)
            raise ValidationError(serializer.errors)
        return Response({"token": serializer.validated_data["user"].issue_token().key})


def admin_login(request, extra_context=None):
    """The admin's login view behind the same failed-login throttle as the token endpoint."""
    throttle = FailedLoginThrottle()
    if request.method == "POST" and throttle.is_blocked(request):
        response = json_error(429, "Too many failed logins; try again later.", "throttled")
        response["Retry-After"] = str(throttle.retry_after())
        return response
    response = admin.site.login(request, extra_context)
    if request.method == "POST" and not request.user.is_authenticated:
        throttle.record_failure(request)
    return response
