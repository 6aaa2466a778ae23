"""Refuse oversized requests before anything reads them, with the API's JSON errors.

- `RequestHeadLimitMiddleware`: a request line over MAX_REQUEST_LINE_BYTES (414) or a header
  over MAX_HEADER_BYTES (431). gunicorn.conf.py lets such requests through to Django, so
  they get JSON rather than gunicorn's HTML page.
- `BodySizeLimitMiddleware`: a body over DATA_UPLOAD_MAX_MEMORY_SIZE (413). DRF parses JSON
  from the request stream, which Django's own limit (checked when `request.body` is read)
  does not cover, so the limit is enforced here from the Content-Length header; a body
  without one is not read by Django at all.

`BrowserSessionMiddleware` runs Django's session middleware only where a session can exist.
"""

from django.conf import settings
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.http.request import HttpHeaders

from .exceptions import json_error

# Enough of a header's name to say which one it was, however long the name itself is.
NAME_SHOWN = 64


class RequestHeadLimitMiddleware:
    """First in MIDDLEWARE, so nothing else (a redirect, static files) answers such a request.

    Sizes are bytes: WSGI hands over the request line and headers as latin-1 strings, one
    character per byte. The request line counts its method, path and query string; a header
    its name and value (a repeated header arrives joined into one).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        line_limit = settings.MAX_REQUEST_LINE_BYTES
        # gunicorn passes the path and query as sent; other servers (and tests) rebuild them.
        target = request.META.get("RAW_URI") or request.get_full_path()
        if len(request.method) + len(target) > line_limit:
            return json_error(414, f"The request line exceeds {line_limit} bytes.", "uri_too_long")
        header_limit = settings.MAX_HEADER_BYTES
        # META, not request.headers (which builds a new mapping for every request): a
        # header's name is its META key without "HTTP_", as long.
        for key, value in request.META.items():
            name = HttpHeaders.parse_header_name(key)
            if name is not None and len(name) + len(value) > header_limit:
                return json_error(
                    431,
                    f"The {name[:NAME_SHOWN]} header exceeds {header_limit} bytes.",
                    "header_too_large",
                )
        return self.get_response(request)


class BodySizeLimitMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return json_error(400, "Content-Length is not a number.", "bad_content_length")
        if limit is not None and length > limit:
            return json_error(413, f"The request body exceeds {limit} bytes.", "request_too_large")
        return self.get_response(request)


class BrowserSessionMiddleware:
    """Django's session, authentication and messages middleware, for the requests that can
    use them: the admin's pages, and any request carrying the session cookie (the admin
    login also signs Swagger UI's requests in). An API client with a token has no session:
    its requests skip loading one (about 0.1 ms of CPU per request, measured in-process).
    DRF's SessionAuthentication finds no `user` on such a request and leaves it anonymous.
    """

    def __init__(self, get_response):
        self.get_response = get_response
        self.with_session = SessionMiddleware(
            AuthenticationMiddleware(MessageMiddleware(get_response))
        )

    def __call__(self, request):
        if request.path_info.startswith(settings.SESSION_PATHS) or (
            settings.SESSION_COOKIE_NAME in request.COOKIES
        ):
            return self.with_session(request)
        return self.get_response(request)
