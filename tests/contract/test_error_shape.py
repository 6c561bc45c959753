"""Every error the framework answers has the one shape
``{"error": {"code", "message", "details"}}``: unknown routes, wrong methods,
bodies too large or not JSON, refused credentials and unhandled exceptions.
A crash answers 500 with a request id and no traceback, and is logged with it;
every request leaves one access-log line, and no secret reaches the logs."""

from __future__ import annotations

import json
import logging
import re
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import peewee
import pytest
import trio

from crewboard.config import Config
from crewboard.home import Home
from crewboard.web.app import create_app
from tests.conftest import PASSWORD, Account, client_for, make_config

# It opens boards outside the board fixtures (make_config, crewboard commands).
pytestmark = pytest.mark.board

MAX_BODY_BYTES = 4096


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """The harness's configuration with a small body limit, so 413 is cheap."""
    return make_config(tmp_path / "home", max_body_bytes=MAX_BODY_BYTES)


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], dict)
    assert response.headers.get("x-request-id")
    return error


async def test_unknown_routes_are_404(anon):
    for path in ("/api/no-such-thing", "/auth/nope", "/openapi/nope", "/no/such/page"):
        assert_error(await anon.get(path), 404, "not_found")
    # An id that is not a board id does not reach any route.
    assert_error(await anon.delete("/api/tokens/abc"), 404, "not_found")
    assert_error(await anon.delete("/api/tokens/1234567890123456789"), 404, "not_found")


async def test_a_wrong_method_is_405_with_allow(anon):
    response = await anon.delete("/auth/me")
    assert_error(response, 405, "method_not_allowed")
    assert "GET" in {m.strip() for m in response.headers["allow"].split(",")}
    response = await anon.get("/auth/login")
    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["allow"]


async def test_a_body_over_the_limit_is_413(anon, server):
    too_big = {"email": "x@example.test", "password": "p" * MAX_BODY_BYTES}
    error = assert_error(await anon.post("/auth/login", json=too_big), 413, "payload_too_large")
    # It names the limit, so a client can say what would be taken.
    assert error["details"] == {"maxBytes": MAX_BODY_BYTES}
    assert "4,096 bytes" in error["message"]

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(8):
            yield b" " * (MAX_BODY_BYTES // 4)

    # Without a Content-Length the limit holds too, counted as the body arrives.
    response = await anon.post(
        "/auth/login", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert_error(response, 413, "payload_too_large")
    # The server still answers on a new request afterwards.
    async with client_for(server) as client:
        assert (await client.get("/auth/me")).status_code == 200


async def test_a_body_that_is_not_a_json_object_is_400(anon, server, alice):
    for body in (b"{nope", b"[1, 2]", b'"text"', b"\xff\xfe"):
        response = await anon.post(
            "/auth/login", content=body, headers={"Content-Type": "application/json"}
        )
        assert_error(response, 400, "bad_request")
    async with client_for(server) as client:
        await client.post("/auth/login", json={"email": alice.email, "password": PASSWORD})
        response = await client.post(
            "/api/tokens", content=b"{nope", headers={"Content-Type": "application/json"}
        )
        assert_error(response, 400, "bad_request")


async def test_field_errors_are_422_naming_each_field(server, alice):
    async with client_for(server) as client:
        await client.post("/auth/login", json={"email": alice.email, "password": PASSWORD})
        response = await client.post("/api/tokens", json={"name": "", "colour": "red"})
        error = assert_error(response, 422, "validation_failed")
        assert set(error["details"]["fields"]) == {"name", "colour"}
        assert all(isinstance(v, str) for v in error["details"]["fields"].values())


async def test_refusals_have_the_error_shape(server, alice, anon):
    assert_error(await anon.get("/api/tokens"), 401, "unauthorized")
    bad_token = {"Authorization": "Bearer cb_not-a-token"}
    assert_error(await anon.get("/auth/me", headers=bad_token), 401, "unauthorized")
    async with client_for(server) as client:
        await client.post("/auth/login", json={"email": alice.email, "password": PASSWORD})
        foreign = {"Origin": "http://evil.example"}
        response = await client.post("/api/tokens", json={"name": "x"}, headers=foreign)
        assert_error(response, 403, "forbidden")


async def _read_response(stream: trio.SocketStream) -> tuple[bytes, bytes]:
    """One HTTP/1.1 response's head and body (framed by Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive_some(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?im)^content-length:\s*(\d+)", head)[1])
    while len(body) < length:
        body += await stream.receive_some(65536)
    return head, body


async def test_an_error_before_the_body_arrives_never_stalls_the_client(server):
    """An error (a refused method, a missing login), or an OPTIONS, may answer
    before the request body has arrived. The client must then either be told
    to close the connection, or get its next request on it answered."""
    host, port = urlsplit(server).hostname, urlsplit(server).port
    expected = {"PUT": b"405", "POST": b"401", "OPTIONS": b"200"}
    for method, path in (
        ("PUT", "/auth/login"),
        ("POST", "/api/tokens"),
        ("OPTIONS", "/api/tokens"),
    ):
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            body = b'{"name": "x"}'
            await stream.send_all(
                f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            )
            head, answer = await _read_response(stream)
            assert head.split(b" ", 2)[1] == expected[method], head
            if method != "OPTIONS":
                assert set(json.loads(answer)) == {"error"}
            if re.search(rb"(?im)^connection:\s*close", head):
                continue
            # A slow client: its body arrives after the server has answered.
            await trio.sleep(0.2)
            await stream.send_all(body + f"GET /auth/me HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            with trio.move_on_after(30) as waited:
                next_head, _ = await _read_response(stream)
            assert not waited.cancelled_caught, f"{method} {path}: the next request hung"
            assert next_head.startswith(b"HTTP/1.1 200")


@pytest.fixture
def crashing_app(config: Config, home: Home):
    app = create_app(config, home)

    @app.get("/api/contract-test/crash")
    async def crash():
        raise RuntimeError("secret internals: do not show me")

    return app


async def test_an_unhandled_exception_is_500_with_a_request_id(crashing_app, caplog):
    caplog.set_level(logging.INFO)
    client = crashing_app.test_client()
    response = await client.get("/api/contract-test/crash", headers={"X-Request-Id": "req-42"})
    assert response.status_code == 500
    body = await response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == "internal_error"
    assert body["error"]["details"] == {"requestId": "req-42"}
    assert response.headers["X-Request-Id"] == "req-42"
    text = await response.get_data(as_text=True)
    assert "Traceback" not in text and "secret internals" not in text and "RuntimeError" not in text

    crash_logs = [r for r in caplog.records if r.exc_info and "req-42" in r.getMessage()]
    assert len(crash_logs) == 1, "the crash is logged once, with its request id"
    assert crash_logs[0].levelno == logging.ERROR
    assert "secret internals" in str(crash_logs[0].exc_info[1])


async def test_each_request_leaves_one_access_log_line(crashing_app, caplog):
    caplog.set_level(logging.INFO, logger="crewboard.access")
    client = crashing_app.test_client()
    await client.get("/api/contract-test/crash", headers={"X-Request-Id": "req-7"})
    await client.get("/auth/me", headers={"X-Request-Id": "req-8"})
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "crewboard.access"]
    by_id = {line["requestId"]: line for line in lines}
    assert len(lines) == 2 and set(by_id) == {"req-7", "req-8"}
    crash = by_id["req-7"]
    assert set(crash) >= {"method", "path", "status", "durationMs", "userId", "requestId"}
    assert (crash["method"], crash["path"], crash["status"]) == (
        "GET",
        "/api/contract-test/crash",
        500,
    )
    assert isinstance(crash["durationMs"], int | float) and crash["durationMs"] >= 0
    assert crash["userId"] is None


async def test_secrets_never_reach_the_logs(server, alice: Account, caplog):
    caplog.set_level(logging.DEBUG)
    async with client_for(server) as client:
        wrong = "wrong-password-that-must-not-be-logged"
        await client.post("/auth/login", json={"email": alice.email, "password": wrong})
        await client.post("/auth/login", json={"email": alice.email, "password": PASSWORD})
        session_cookie = client.cookies.get("crewboard_session")
        token = (await client.post("/api/tokens", json={"name": "ci"})).json()["token"]
    async with client_for(server, headers={"Authorization": f"Bearer {token}"}) as bearer:
        assert (await bearer.get("/api/tokens")).status_code == 200
        me = (await bearer.get("/auth/me")).json()
        assert me["id"] == alice.id
    # The test's own HTTP client logs what it sent and received; only the server's logs count.
    server_records = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in server_records)
    access = [json.loads(r.getMessage()) for r in caplog.records if r.name == "crewboard.access"]
    assert [line["userId"] for line in access if line["path"] == "/api/tokens"][-1] == alice.id
    for secret in (PASSWORD, wrong, session_cookie, token):
        assert secret and secret not in logged


async def test_a_write_the_disk_has_no_room_for_is_507(config: Config, home: Home, caplog):
    app = create_app(config, home)

    @app.post("/api/contract-test/disk-full")
    async def disk_full():
        try:
            raise sqlite3.OperationalError("database or disk is full")
        except sqlite3.OperationalError as exc:
            raise peewee.OperationalError("database or disk is full") from exc

    caplog.set_level(logging.INFO, logger="crewboard")
    client = app.test_client()
    response = await client.post("/api/contract-test/disk-full", headers={"X-Request-Id": "req-9"})
    assert response.status_code == 507
    body = await response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == "insufficient_storage"
    # The server's log says what happened, without a traceback: it is no crash.
    assert not [r for r in caplog.records if r.exc_info]
    (line,) = [json.loads(r.getMessage()) for r in caplog.records if r.name == "crewboard.access"]
    assert line["status"] == 507 and line["error"].startswith("insufficient_storage: ")
