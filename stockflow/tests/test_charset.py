"""JSON is UTF-8: a request naming another charset is a 415 before its body is decoded, and no
codec is ever looked up from a request. In-process here (the test client, the WSGI gate, the
parser); stockflow/tests/test_request_gates.py asks the same of real gunicorn and uvicorn.
"""

import bz2
import codecs
import io
import json
import zlib

import pytest
from django.test import RequestFactory

from stockflow.parsers import DecimalJSONParser, UnsupportedCharset, charset_is_utf8
from users.models import User

UNSUPPORTED_CHARSET = {
    "detail": "Requests are read as UTF-8 only: send charset=utf-8, or no charset.",
    "code": "unsupported_charset",
}
REGISTRATION = {"username": "alice", "balance": "100.00"}
UTF8_BODY = json.dumps(REGISTRATION).encode()
# Each body is what its charset would decode to a valid registration.
OTHER_CHARSETS = {
    "bz2": bz2.compress(UTF8_BODY),
    "zlib": zlib.compress(UTF8_BODY),
    "rot13": codecs.encode(UTF8_BODY.decode(), "rot13").encode(),
    "latin-1": UTF8_BODY,
    "ISO-8859-1": UTF8_BODY,
    "utf-16": UTF8_BODY.decode().encode("utf-16"),
    "utf-8-sig": UTF8_BODY,
    "us-ascii": UTF8_BODY,
    "no-such-charset": UTF8_BODY,
}
UTF8_SPELLINGS = ["utf-8", "UTF-8", "uTf-8", '"UTF-8"', "utf8", "UTF8", "utf_8", "u8", " utf-8 "]


def post(client, body: bytes, content_type: str, path: str = "/users/"):
    # generic(), not post(): post() re-encodes a body in the charset it names.
    return client.generic("POST", path, body, content_type=content_type)


@pytest.mark.django_db
@pytest.mark.parametrize("charset", OTHER_CHARSETS)
def test_a_charset_other_than_utf8_is_a_415_and_stores_nothing(api_client, charset):
    response = post(api_client, OTHER_CHARSETS[charset], f"application/json; charset={charset}")

    assert response.status_code == 415
    assert response.json() == UNSUPPORTED_CHARSET
    assert not User.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "content_type",
    [
        "application/json; charset*=utf-8''utf-8",  # RFC 2231: Django decodes it with a codec
        "application/json; charset=utf-8; charset=bz2",
        'application/json; charset="utf-8;bz2"',
        "application/json; charset=utf-8 bz2",
    ],
)
def test_a_charset_in_any_other_form_than_a_plain_parameter_is_a_415(api_client, content_type):
    response = post(api_client, UTF8_BODY, content_type)

    assert response.status_code == 415
    assert response.json() == UNSUPPORTED_CHARSET
    assert not User.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("charset", UTF8_SPELLINGS)
def test_utf8_by_any_of_its_names_in_any_case_is_read(api_client, charset):
    response = post(api_client, UTF8_BODY, f"application/json;charset={charset}")

    assert response.status_code == 201
    assert response.json()["username"] == "alice"


def test_every_accepted_name_is_pythons_utf8_codec():
    # The test may ask codecs what the server must never ask it.
    for name in ["utf-8", "utf8", "utf_8", "u8", "utf", "utf8-ucs2", "utf8_ucs4", "cp65001"]:
        assert charset_is_utf8(f"application/json; charset={name}"), name
        assert codecs.lookup(name).name == "utf-8", name


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("", True),
        ("application/json", True),
        ("multipart/form-data; boundary=BoUnDaRy", True),
        ("application/json; charset=utf-8", True),
        ('application/json ; CHARSET = "UTF-8" ; x=1', True),
        ("application/json; charset=bz2", False),
        ("application/json; charset=", False),
        ("application/json; charset", False),
        ('application/json; charset="utf-8', False),
        ("application/json; charset=utf-16le", False),
        ("application/json; charset=utf-8\xa0bz2", False),
        ("charset=bz2", False),
    ],
)
def test_the_charset_rule_reads_the_header_as_django_would_or_refuses(content_type, expected):
    assert charset_is_utf8(content_type) is expected


@pytest.mark.django_db
def test_undecodable_bytes_with_charset_utf8_are_a_400_and_store_nothing(api_client):
    body = b'{"username": "\xff\xfe", "balance": "1"}'

    response = post(api_client, body, "application/json; charset=utf-8")

    assert response.status_code == 400
    assert response.json() == {
        "detail": "JSON parse error - 'utf-8' codec can't decode byte 0xff in position 14: "
        "invalid start byte",
        "code": "parse_error",
    }
    assert not User.objects.exists()


def test_the_parser_decodes_utf8_only_whatever_the_request_says():
    parser = DecimalJSONParser()
    utf16 = '{"a": 1}'.encode("utf-16")

    with pytest.raises(UnsupportedCharset):
        parser.parse(io.BytesIO(bz2.compress(b"{}")), "application/json; charset=bz2")
    # Django would have set the request's `encoding` to utf-16: the parser does not use it.
    with pytest.raises(Exception, match="JSON parse error - 'utf-8' codec can't decode"):
        parser.parse(io.BytesIO(utf16), "application/json", {"encoding": "utf-16"})
    assert parser.parse(io.BytesIO(b'{"a": 1.5}'), "application/json") == {"a": 1.5}


# --- the WSGI gate, in front of Django --------------------------------------------------------


def call_wsgi(environ: dict) -> tuple[str, dict, bytes]:
    from stockflow.wsgi import application

    answer = {}

    def start_response(status, headers, exc_info=None):
        answer["status"], answer["headers"] = status, dict(headers)

    body = b"".join(application(environ, start_response))
    return answer["status"], answer["headers"], body


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_no_codec_is_looked_up_from_a_request(monkeypatch, method):
    looked_up = []
    lookup = codecs.lookup

    def recording_lookup(name):
        looked_up.append(name)
        return lookup(name)

    # Django looks the charset up while it builds the request, before any middleware, and
    # decodes the query string with it: on main, a LookupError escaped as a 500.
    body = b"x" if method == "POST" else b""
    environ = RequestFactory().generic(method, "/users/?ticker=AAPL", body).environ
    environ["CONTENT_TYPE"] = "application/json; charset=rot13"
    monkeypatch.setattr(codecs, "lookup", recording_lookup)

    status, headers, body = call_wsgi(environ)

    assert looked_up == []
    assert status == "415 Unsupported Media Type"
    assert headers["Content-Type"] == "application/json"
    assert headers["Content-Length"] == str(len(body))
    assert json.loads(body) == UNSUPPORTED_CHARSET


@pytest.mark.django_db
def test_a_utf8_request_passes_the_wsgi_gate_to_django():
    environ = RequestFactory().get("/").environ
    environ["CONTENT_TYPE"] = "application/json; charset=UTF-8"

    status, _, body = call_wsgi(environ)

    assert status == "200 OK"
    assert json.loads(body)["links"]["swagger"] == "/swagger/"


@pytest.mark.django_db
def test_an_admin_form_post_with_or_without_a_charset_still_works(client, staff):
    staff.set_password("staff-pass-1")
    staff.save(update_fields=["password"])
    form = f"username={staff.username}&password=staff-pass-1&next=/admin/"

    for content_type in [
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded; charset=UTF-8",
    ]:
        client.logout()
        response = client.generic("POST", "/admin/login/", form, content_type=content_type)

        assert response.status_code == 302, content_type
        assert response["Location"] == "/admin/"
