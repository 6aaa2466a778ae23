"""Through real gunicorn and uvicorn: JSON is UTF-8, and the body limit holds before buffering.

Both servers run as the Procfile starts them (gunicorn with gunicorn.conf.py; uvicorn with the
`ws` process's flags), in embedded mode on one migrated SQLite file, each with TMPDIR pointed
at a directory of its own. Bodies are sent over a raw socket, so that a test can stream 50 MB
and see whether the server answers before it has read them all.
"""

import asyncio
import bz2
import codecs
import http.client
import json
import os
import select
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from stockflow.testing import (
    ASGI_SERVER_FLAGS,
    Process,
    embedded_env,
    free_port,
    wait_until_serving,
)

LIMIT = 2_621_440  # DATA_UPLOAD_MAX_MEMORY_SIZE's default, stated for the servers
FAR_OVER = 50 * 1024 * 1024
TOO_LARGE = {"detail": f"The request body exceeds {LIMIT} bytes.", "code": "request_too_large"}
UNSUPPORTED_CHARSET = {
    "detail": "Requests are read as UTF-8 only: send charset=utf-8, or no charset.",
    "code": "unsupported_charset",
}
SERVERS = ["gunicorn", "uvicorn"]


class Server:
    def __init__(self, process: Process, url: str, tmpdir: Path):
        self.process, self.url, self.tmpdir = process, url, tmpdir


@pytest.fixture(scope="module")
def servers(tmp_path_factory) -> dict[str, Server]:
    directory = tmp_path_factory.mktemp("gates")
    env = embedded_env(directory, DATA_UPLOAD_MAX_MEMORY_SIZE=str(LIMIT), THROTTLE_ANON="")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        env=env,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    started: dict[str, Server] = {}
    try:
        for name in SERVERS:
            port = free_port()
            tmpdir = directory / f"{name}-tmp"
            tmpdir.mkdir()
            if name == "gunicorn":
                command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"]
                extra = {"WEB_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "1"}
            else:
                command = [sys.executable, "-m", "uvicorn", "stockflow.asgi:application"]
                command += ["--host", "127.0.0.1", "--port", str(port), *ASGI_SERVER_FLAGS]
                extra = {}
            server_env = {**env, **extra, "TMPDIR": str(tmpdir)}
            process = Process(name, command, server_env, directory / f"{name}.log")
            url = f"http://127.0.0.1:{port}"
            started[name] = Server(process, url, tmpdir)
            wait_until_serving(process, url)
        yield started
    finally:
        for server in started.values():
            server.process.stop()


def user_count(servers) -> int:
    database = Path(servers["gunicorn"].process.log_path).parent / "db.sqlite3"
    with sqlite3.connect(database) as connection:
        return connection.execute("SELECT COUNT(*) FROM users_user").fetchone()[0]


class Answer:
    def __init__(self, status: int, headers: dict, body: bytes, sent: int):
        self.status, self.headers, self.body, self.sent = status, headers, body, sent

    def json(self):
        assert self.headers["content-type"] == "application/json", self.body[:300]
        return json.loads(self.body)


def send_request(
    url: str,
    path: str,
    body_frames,
    headers: dict[str, str],
    method: str = "POST",
) -> Answer:
    """Send the head, then the body's frames until they run out or the server answers.

    Returns the answer and how many body bytes were handed to the socket: a server that
    stops reading answers long before a 50 MB body is all sent.
    """
    host, port = urlsplit(url).hostname, urlsplit(url).port
    sock = socket.create_connection((host, port), timeout=30)
    try:
        head = f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
        sock.sendall(head.encode("latin-1"))
        sent = 0
        sock.setblocking(False)
        pending = b""
        frames = iter(body_frames)
        while True:
            if not pending:
                frame = next(frames, None)
                if frame is None:
                    break
                pending, sent = frame[1], sent + frame[0]
            readable, writable, _ = select.select([sock], [sock], [], 30)
            if readable:
                break  # the server answered (or closed) before the body was all sent
            if not writable:
                raise TimeoutError("the server neither reads nor answers")
            try:
                pending = pending[sock.send(pending) :]
            except (BrokenPipeError, ConnectionResetError):
                break
        sock.setblocking(True)
        sock.settimeout(30)
        response = http.client.HTTPResponse(sock)
        response.begin()
        body = response.read()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return Answer(response.status, headers, body, sent)
    finally:
        sock.close()


def chunked(body: bytes, size: int = 64 * 1024):
    """(body bytes, wire bytes) per chunk, then the last chunk."""
    for start in range(0, len(body), size):
        part = body[start : start + size]
        yield len(part), f"{len(part):x}\r\n".encode() + part + b"\r\n"
    yield 0, b"0\r\n\r\n"


def spaces_chunked(total: int, size: int = 64 * 1024):
    """`total` bytes of JSON whitespace, chunked, generated as they are sent."""
    for start in range(0, total, size):
        part = b" " * min(size, total - start)
        yield len(part), f"{len(part):x}\r\n".encode() + part + b"\r\n"
    yield 0, b"0\r\n\r\n"


def spaces(total: int, size: int = 64 * 1024):
    for start in range(0, total, size):
        part = min(size, total - start)
        yield part, b" " * part


class TempFileWatch:
    """Polls the server's processes' open files in its TMPDIR (Django's spooled body is one,
    unlinked or O_TMPFILE: invisible to a directory listing) and keeps the largest size seen."""

    def __init__(self, server: Server):
        self.server, self.largest, self._stop = server, 0, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _pids(self) -> list[int]:
        pids, index = [self.server.process.pid], 0
        while index < len(pids):
            for task in Path(f"/proc/{pids[index]}/task").glob("*/children"):
                pids += [int(pid) for pid in task.read_text().split()]
            index += 1
        return pids

    def _poll(self):
        prefix = str(self.server.tmpdir)
        while not self._stop.is_set():
            for pid in self._pids():
                for fd in Path(f"/proc/{pid}/fd").glob("*"):
                    try:
                        if os.readlink(fd).startswith(prefix):
                            self.largest = max(self.largest, os.stat(fd).st_size)
                    except OSError:  # closed meanwhile
                        pass
            time.sleep(0.005)


def json_head(**extra: str) -> dict[str, str]:
    return {"Content-Type": "application/json", **extra}


def registration(username: str, padding: int = 0) -> bytes:
    body = json.dumps({"username": username, "balance": "100.00"}).encode()
    return body + b" " * padding


# --- JSON is UTF-8 -----------------------------------------------------------------------------

UTF8_BODY = registration("mallory")
OTHER_CHARSETS = {
    "bz2": bz2.compress(UTF8_BODY),
    "zlib": zlib.compress(UTF8_BODY),
    "rot13": codecs.encode(UTF8_BODY.decode(), "rot13").encode(),
    "latin-1": UTF8_BODY,
    "utf-16": UTF8_BODY.decode().encode("utf-16"),
}
UTF8_SPELLINGS = ["UTF-8", '"uTf-8"', "utf8", "u8"]


@pytest.mark.parametrize("name", SERVERS)
@pytest.mark.parametrize("charset", OTHER_CHARSETS)
def test_a_charset_other_than_utf8_gets_a_json_415_from_the_real_servers(servers, name, charset):
    before = user_count(servers)
    body = OTHER_CHARSETS[charset]
    headers = {"Content-Type": f"application/json; charset={charset}"}

    answer = send_request(
        servers[name].url, "/users/", [(len(body), body)], {**headers, "Content-Length": len(body)}
    )

    assert answer.status == 415
    assert answer.json() == UNSUPPORTED_CHARSET
    assert user_count(servers) == before


@pytest.mark.parametrize("name", SERVERS)
def test_a_read_naming_a_codec_with_a_query_string_is_a_json_415_not_a_500(servers, name):
    # Django decoded the query string with the named codec while building the request.
    headers = {"Content-Type": "text/plain; charset=rot13"}

    answer = send_request(servers[name].url, "/stocks/?ticker=AAPL", [], headers, method="GET")

    assert answer.status == 415
    assert answer.json() == UNSUPPORTED_CHARSET


@pytest.mark.parametrize("name", SERVERS)
@pytest.mark.parametrize("charset", UTF8_SPELLINGS)
def test_utf8_in_any_case_and_quotes_registers_on_the_real_servers(servers, name, charset):
    username = f"{name}-{UTF8_SPELLINGS.index(charset)}"  # one account per name, any case
    body = registration(username)
    headers = {"Content-Type": f"application/json; charset={charset}"}

    answer = send_request(
        servers[name].url, "/users/", [(len(body), body)], {**headers, "Content-Length": len(body)}
    )

    assert answer.status == 201, answer.body
    assert answer.json()["username"] == username


@pytest.mark.parametrize("name", SERVERS)
def test_undecodable_bytes_are_a_json_400_on_the_real_servers(servers, name):
    before = user_count(servers)
    body = b'{"username": "\xff\xfe", "balance": "1"}'
    headers = {"Content-Type": "application/json; charset=utf-8", "Content-Length": len(body)}

    answer = send_request(servers[name].url, "/users/", [(len(body), body)], headers)

    assert answer.status == 400
    assert answer.json()["code"] == "parse_error"
    assert user_count(servers) == before


# --- body limits before buffering --------------------------------------------------------------


@pytest.mark.parametrize("name", SERVERS)
def test_a_chunked_50_mb_body_gets_a_json_413_while_it_arrives_and_no_temp_file_grows(
    servers, name
):
    headers = json_head(**{"Transfer-Encoding": "chunked"})

    with TempFileWatch(servers[name]) as temp_files:
        answer = send_request(servers[name].url, "/users/", spaces_chunked(FAR_OVER), headers)

    assert temp_files.largest == 0  # on main: 52,428,800, the whole body spooled to disk
    assert answer.status == 413
    assert answer.json() == TOO_LARGE
    assert answer.sent < FAR_OVER / 2  # answered long before the body was all sent


@pytest.mark.parametrize("name", SERVERS)
def test_a_content_length_over_the_limit_gets_a_json_413_before_the_body_is_read(servers, name):
    headers = json_head(**{"Content-Length": str(FAR_OVER)})

    with TempFileWatch(servers[name]) as temp_files:
        answer = send_request(servers[name].url, "/users/", spaces(FAR_OVER), headers)

    assert temp_files.largest == 0
    assert answer.status == 413
    assert answer.json() == TOO_LARGE
    assert answer.sent < FAR_OVER / 2


@pytest.mark.parametrize("name", SERVERS)
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_body_of_exactly_the_limit_still_works(servers, name, framing):
    username = f"{name}-{framing}"
    unpadded = registration(username)
    body = registration(username, padding=LIMIT - len(unpadded))
    assert len(body) == LIMIT
    if framing == "chunked":
        frames, headers = chunked(body), json_head(**{"Transfer-Encoding": "chunked"})
    else:
        frames, headers = [(len(body), body)], json_head(**{"Content-Length": str(len(body))})

    with TempFileWatch(servers[name]) as temp_files:
        answer = send_request(servers[name].url, "/users/", frames, headers)

    assert answer.status == 201, answer.body[:300]
    assert answer.json()["username"] == username
    assert temp_files.largest == 0  # within FILE_UPLOAD_MAX_MEMORY_SIZE: kept in memory


@pytest.mark.parametrize("name", SERVERS)
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_one_byte_over_the_limit_is_a_json_413(servers, name, framing):
    before = user_count(servers)
    unpadded = registration("one-over")
    body = registration("one-over", padding=LIMIT + 1 - len(unpadded))
    if framing == "chunked":
        frames, headers = chunked(body), json_head(**{"Transfer-Encoding": "chunked"})
    else:
        frames, headers = [(len(body), body)], json_head(**{"Content-Length": str(len(body))})

    answer = send_request(servers[name].url, "/users/", frames, headers)

    assert answer.status == 413
    assert answer.json() == TOO_LARGE
    assert user_count(servers) == before


# --- the ASGI gate in-process, at its edges ----------------------------------------------------


def run_gate(headers: list[tuple[bytes, bytes]], messages: list[dict]) -> tuple[list, list]:
    """Run ASGIRequestGate over a recording app; return what the app got and what was sent."""
    from stockflow.middleware import ASGIRequestGate

    seen, sent = [], []

    async def app(scope, receive, send):
        seen.append(scope["headers"])
        while (message := await receive())["type"] == "http.request":
            seen.append(message)
            if not message.get("more_body"):
                break

    incoming = iter(messages)

    async def receive():
        return next(incoming, {"type": "http.disconnect"})

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/users/", "headers": headers}
    asyncio.run(ASGIRequestGate(app)(scope, receive, send))
    return seen, sent


def test_the_asgi_gate_hands_a_chunked_body_within_the_limit_on_whole_with_its_length(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10
    parts = [{"type": "http.request", "body": b"12345", "more_body": True}]
    parts += [{"type": "http.request", "body": b"67890", "more_body": False}]

    seen, sent = run_gate([(b"transfer-encoding", b"chunked")], parts)

    assert seen == [
        [(b"content-length", b"10")],
        {"type": "http.request", "body": b"1234567890", "more_body": False},
    ]
    assert sent == []


def test_the_asgi_gate_answers_413_once_a_body_passes_the_limit_and_reads_no_further(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10
    parts = [{"type": "http.request", "body": b"123456", "more_body": True}] * 3

    seen, sent = run_gate([(b"content-length", b"10")], parts)

    # The declared length lied (a server would not let it): the count still stops it.
    assert seen == [[(b"content-length", b"10")], parts[0]]
    assert sent[0]["status"] == 413
    assert (b"connection", b"close") in sent[0]["headers"]
    assert json.loads(sent[1]["body"]) == {
        "detail": "The request body exceeds 10 bytes.",
        "code": "request_too_large",
    }


def test_the_asgi_gate_answers_nothing_when_the_client_leaves_mid_body(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10
    parts = [{"type": "http.request", "body": b"123", "more_body": True}]

    seen, sent = run_gate([(b"transfer-encoding", b"chunked")], parts)

    assert seen == []
    assert sent == []
