"""Oversized request lines and headers get the API's JSON 414 / 431, through a real gunicorn.

The server is gunicorn as the Procfile and `bin/run` start it (the repo's gunicorn.conf.py),
in embedded mode on a fresh SQLite file; the routes used here never need a table. The
middleware's exact boundaries are tested in-process below.
"""

import json
import sys

import pytest
import requests
from django.http import HttpResponse
from django.test import RequestFactory

from stockflow.middleware import RequestHeadLimitMiddleware
from stockflow.testing import Process, embedded_env, free_port, wait_until_serving

# The settings' defaults, stated for the server so that a developer's .env cannot move them.
LINE_LIMIT = 4094
HEADER_LIMIT = 8190
URI_TOO_LONG = {"detail": f"The request line exceeds {LINE_LIMIT} bytes.", "code": "uri_too_long"}
NOT_AUTHENTICATED = {
    "detail": "Authentication credentials were not provided.",
    "code": "not_authenticated",
}


def header_too_large(name: str) -> dict:
    return {
        "detail": f"The {name} header exceeds {HEADER_LIMIT} bytes.",
        "code": "header_too_large",
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> str:
    """gunicorn with gunicorn.conf.py on a free port, from the repository root; yields its URL."""
    directory = tmp_path_factory.mktemp("gunicorn")
    port = free_port()
    env = embedded_env(
        directory,
        MAX_REQUEST_LINE_BYTES=str(LINE_LIMIT),
        MAX_HEADER_BYTES=str(HEADER_LIMIT),
        # Read by gunicorn.conf.py, as the Procfile's web process does.
        WEB_BIND=f"127.0.0.1:{port}",
        WEB_CONCURRENCY="1",
    )
    command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"]
    process = Process("gunicorn", command, env, directory / "gunicorn.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(process, url)
        yield url
    finally:
        process.stop()


def assert_json(response, status: int, expected: dict):
    assert response.status_code == status, response.text[:500]
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == expected


@pytest.mark.parametrize("path", ["/users/", "/transactions/1/2025-01-01/2025-01-02/"])
def test_a_5_kb_query_string_gets_a_json_414_from_the_real_server(server, path):
    response = requests.get(f"{server}{path}?x={'a' * 5000}", timeout=10)

    assert_json(response, 414, URI_TOO_LONG)


def test_the_request_line_is_measured_as_the_client_sent_it(server):
    # 1,400 escaped slashes: 4,200 bytes on the wire, although Django's decoded path is 1,400.
    response = requests.get(f"{server}/{'%2F' * 1400}", timeout=10)

    assert_json(response, 414, URI_TOO_LONG)


def test_a_9_kb_header_gets_a_json_431_from_the_real_server(server):
    response = requests.get(f"{server}/users/", headers={"X-Padding": "a" * 9000}, timeout=10)

    assert_json(response, 431, header_too_large("X-Padding"))


def test_a_9_kb_cookie_gets_a_json_431_from_the_real_server(server):
    response = requests.get(f"{server}/health/", headers={"Cookie": "a=" + "b" * 9000}, timeout=10)

    assert_json(response, 431, header_too_large("Cookie"))


def test_a_request_just_within_both_limits_gets_its_normal_answer(server):
    path = "/users/?x="
    query = "a" * (LINE_LIMIT - len("GET") - len(path))
    padding = "a" * (HEADER_LIMIT - len("X-Padding"))

    response = requests.get(f"{server}{path}{query}", headers={"X-Padding": padding}, timeout=10)

    assert_json(response, 401, NOT_AUTHENTICATED)


def test_normal_requests_still_work(server):
    health = requests.get(f"{server}/health/", timeout=10)
    index = requests.get(f"{server}/", timeout=10)

    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    assert index.status_code == 200
    assert index.json()["links"]["swagger"] == "/swagger/"


@pytest.mark.parametrize(
    ("status", "request_line_bytes", "header_bytes"),
    [(414, 9000, 0), (431, 0, 40_000)],
)
def test_beyond_gunicorns_own_ceiling_gunicorn_answers_with_its_html_page(
    server, status, request_line_bytes, header_bytes
):
    """The known limit the README states: gunicorn.conf.py's 8190 / 32768 bytes."""
    headers = {"X-Padding": "a" * header_bytes} if header_bytes else {}

    response = requests.get(
        f"{server}/users/?x={'a' * request_line_bytes}", headers=headers, timeout=10
    )

    assert response.status_code == status
    assert response.headers["Content-Type"] == "text/html"


# --- the middleware in-process, at its exact boundaries ----------------------------------------


def ok(request) -> HttpResponse:
    return HttpResponse("ok")


def body(response) -> dict:
    assert response["Content-Type"] == "application/json"
    return json.loads(response.content)


@pytest.fixture
def limits(settings):
    settings.MAX_REQUEST_LINE_BYTES = 100
    settings.MAX_HEADER_BYTES = 50
    return RequestHeadLimitMiddleware(ok)


def test_a_request_line_of_exactly_the_limit_passes_and_one_byte_more_is_a_414(limits):
    path = "/users/?x="
    at_limit = RequestFactory().get(path + "a" * (100 - len("GET") - len(path)))
    over = RequestFactory().get(path + "a" * (100 - len("GET") - len(path) + 1))

    assert limits(at_limit).content == b"ok"
    response = limits(over)
    assert response.status_code == 414
    assert body(response) == {
        "detail": "The request line exceeds 100 bytes.",
        "code": "uri_too_long",
    }


def test_the_method_counts_towards_the_request_line(limits):
    path = "/users/?x=" + "a" * (100 - len("GET") - len("/users/?x="))

    assert limits(RequestFactory().get(path)).content == b"ok"
    assert limits(RequestFactory().delete(path)).status_code == 414


def test_the_request_line_is_the_raw_target_gunicorn_passes_when_there_is_one(limits):
    raw = "/" + "%2F" * 32  # 100 bytes with GET, however short the path Django decoded
    at_limit = RequestFactory().get("/", RAW_URI=raw)
    over = RequestFactory().get("/", RAW_URI=raw + "a")

    assert limits(at_limit).content == b"ok"
    assert limits(over).status_code == 414


def test_a_header_of_exactly_the_limit_passes_and_one_byte_more_is_a_431(limits):
    at_limit = RequestFactory().get("/", HTTP_X_PADDING="a" * (50 - len("X-Padding")))
    over = RequestFactory().get("/", HTTP_X_PADDING="a" * (50 - len("X-Padding") + 1))

    assert limits(at_limit).content == b"ok"
    response = limits(over)
    assert response.status_code == 431
    assert body(response) == {
        "detail": "The X-Padding header exceeds 50 bytes.",
        "code": "header_too_large",
    }


def test_content_type_is_a_header_like_any_other(limits):
    request = RequestFactory().post("/users/", "{}", content_type="application/" + "x" * 50)

    response = limits(request)

    assert response.status_code == 431
    assert body(response)["detail"] == "The Content-Type header exceeds 50 bytes."


def test_a_header_named_at_length_is_named_only_in_part(limits):
    name = "X-" + "N" * 200
    request = RequestFactory().get("/", headers={name: "v"})

    detail = body(limits(request))["detail"]

    assert detail == f"The {name.title()[:64]} header exceeds 50 bytes."
