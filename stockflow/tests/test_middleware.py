"""BrowserSessionMiddleware: sessions for the admin and session-cookie requests only."""

import pytest
from django.conf import settings
from django.http import HttpResponse
from django.test import RequestFactory

from stockflow.middleware import BrowserSessionMiddleware


def sees(path: str, **cookies) -> tuple[bool, bool]:
    """Whether the view behind the middleware saw a session and a `user`."""
    seen = []

    def view(request):
        seen.append((hasattr(request, "session"), hasattr(request, "user")))
        return HttpResponse()

    request = RequestFactory().get(path)
    request.COOKIES.update(cookies)
    BrowserSessionMiddleware(view)(request)
    return seen[0]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "cookies", "expected"),
    [
        ("/stocks/ACME/", {}, (False, False)),
        ("/users/alice/", {}, (False, False)),
        ("/admin/", {}, (True, True)),
        ("/admin/login/", {}, (True, True)),
        ("/stocks/ACME/", {settings.SESSION_COOKIE_NAME: "x"}, (True, True)),
    ],
)
def test_only_the_admin_and_session_cookie_requests_get_a_session(path, cookies, expected):
    assert sees(path, **cookies) == expected


@pytest.mark.django_db
def test_a_staff_session_from_the_admin_login_still_signs_api_requests_in(client):
    from users.tests.factories import UserFactory

    staff = UserFactory(is_staff=True, password="correct-horse-2025")
    client.post("/admin/login/", {"username": staff.username, "password": "correct-horse-2025"})

    assert client.get("/users/").status_code == 200  # staff-only, by the session cookie
