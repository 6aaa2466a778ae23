"""Refuse bad requests before anything reads them, with the API's JSON errors.

In front of Django, wrapping the server's application (stockflow.wsgi, stockflow.asgi):
- `WSGIRequestGate` / `ASGIRequestGate`: a Content-Type naming a charset other than UTF-8
  (415 `unsupported_charset`), before Django builds the request: Django looks the charset up
  as a codec there, and decodes the query string with it (`charset=rot13` with `?a=1` was a
  500 before any middleware ran). The ASGI gate also refuses a body over
  DATA_UPLOAD_MAX_MEMORY_SIZE (413) from its Content-Length, or while reading it, before
  Django spools it to a temporary file; both gates hand a chunked body within the limit to
  Django with its Content-Length, which Django and DRF need to read it at all.

Django middleware:
- `RequestHeadLimitMiddleware`: a request line over MAX_REQUEST_LINE_BYTES (414) or a header
  over MAX_HEADER_BYTES (431). gunicorn.conf.py lets such requests through to Django, so
  they get JSON rather than gunicorn's HTML page. It refuses a charset other than UTF-8 too,
  for whoever calls Django without a gate (the test client).
- `BodySizeLimitMiddleware`: a body over DATA_UPLOAD_MAX_MEMORY_SIZE (413). DRF parses JSON
  from the request stream, which Django's own limit (checked when `request.body` is read)
  does not cover, so the limit is enforced here from the Content-Length header; a body
  without one reaches Django only through a gate, which gives it one.

`BrowserSessionMiddleware` runs Django's session middleware only where a session can exist.
"""

import io

from django.conf import settings
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpResponse
from django.http.request import HttpHeaders

from .exceptions import json_error
from .parsers import UNSUPPORTED_CHARSET, charset_is_utf8

# Enough of a header's name to say which one it was, however long the name itself is.
NAME_SHOWN = 64
# What a gate reads of a chunked body at a time, under gunicorn.
READ_SIZE = 64 * 1024


def unsupported_charset() -> HttpResponse:
    return json_error(415, UNSUPPORTED_CHARSET, "unsupported_charset")


def body_too_large(limit: int) -> HttpResponse:
    return json_error(413, f"The request body exceeds {limit} bytes.", "request_too_large")


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
        if not charset_is_utf8(request.META.get("CONTENT_TYPE", "")):
            return unsupported_charset()
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
            return body_too_large(limit)
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


# --- in front of Django ------------------------------------------------------------------------


class WSGIRequestGate:
    """Wraps Django's WSGI application (gunicorn's, in stockflow.wsgi)."""

    def __init__(self, application):
        self.application = application

    def __call__(self, environ, start_response):
        if not charset_is_utf8(environ.get("CONTENT_TYPE", "")):
            return _wsgi_answer(unsupported_charset(), start_response)
        # gunicorn passes a chunked body without CONTENT_LENGTH, and Django then reads none of
        # it (its LimitedStream stops at 0 bytes): the body is read here, up to the limit.
        if not environ.get("CONTENT_LENGTH") and "chunked" in (
            environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        ):
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            body = _read_within(environ["wsgi.input"], limit)
            if body is None:
                return _wsgi_answer(body_too_large(limit), start_response)
            environ["CONTENT_LENGTH"] = str(len(body))
            environ["wsgi.input"] = io.BytesIO(body)
        return self.application(environ, start_response)


def _read_within(stream, limit: int | None) -> bytes | None:
    """The whole stream, or None as soon as it is over `limit` bytes."""
    parts, size = [], 0
    while chunk := stream.read(READ_SIZE):
        size += len(chunk)
        if limit is not None and size > limit:
            return None
        parts.append(chunk)
    return b"".join(parts)


def _wsgi_answer(response: HttpResponse, start_response) -> list[bytes]:
    headers = [*response.items(), ("Content-Length", str(len(response.content)))]
    start_response(f"{response.status_code} {response.reason_phrase}", headers)
    return [response.content]


class ASGIRequestGate:
    """Wraps Django's ASGI HTTP application (uvicorn's, in stockflow.asgi).

    Django's ASGIHandler reads the whole body into a SpooledTemporaryFile (rolling over to
    disk) before any middleware runs, so the body limit is kept here while the body arrives.
    A refused request's body is not read further: the answer says `Connection: close`, and
    the server stops reading the connection.
    """

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        headers = scope.get("headers", [])
        if not all(
            charset_is_utf8(value.decode("latin-1"))
            for name, value in headers
            if name == b"content-type"
        ):
            return await _asgi_answer(unsupported_charset(), send)
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is None:
            return await self.application(scope, receive, send)
        lengths = [value for name, value in headers if name == b"content-length"]
        # An unreadable Content-Length is BodySizeLimitMiddleware's 400 (uvicorn refuses most).
        if any(value.strip().isdigit() and int(value) > limit for value in lengths):
            return await _asgi_answer(body_too_large(limit), send)
        if not lengths and any(
            name == b"transfer-encoding" and b"chunked" in value.lower() for name, value in headers
        ):
            return await self._dechunked(scope, receive, send, limit)

        received = 0

        async def receive_within_limit():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Django stops reading on a disconnect and answers nothing itself.
                    await _asgi_answer(body_too_large(limit), send)
                    return {"type": "http.disconnect"}
            return message

        return await self.application(scope, receive_within_limit, send)

    async def _dechunked(self, scope, receive, send, limit: int):
        """A chunked body, read here within the limit and handed on with its Content-Length:
        DRF reads no body whose request has none."""
        parts, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left
            size += len(message.get("body", b""))
            if size > limit:
                return await _asgi_answer(body_too_large(limit), send)
            parts.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(parts)
        headers = [
            (name, value)
            for name, value in scope.get("headers", [])
            if name not in (b"transfer-encoding", b"content-length")
        ]
        scope = {**scope, "headers": [*headers, (b"content-length", str(len(body)).encode())]}
        replayed = False

        async def receive_body():
            nonlocal replayed
            if replayed:
                return await receive()  # Django then listens for the client leaving
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.application(scope, receive_body, send)


async def _asgi_answer(response: HttpResponse, send):
    headers = [
        (name.encode("latin-1"), value.encode("latin-1")) for name, value in response.items()
    ]
    headers += [(b"content-length", str(len(response.content)).encode()), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": response.content})
