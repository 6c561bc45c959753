"""Hostile input at the edge, through the live server: deep JSON, strings no
database can store, impossible dates, over-long URLs and headers. Each is a
4xx in the one JSON error shape naming what was wrong, never a 500, and
nothing of a refused request is written."""

from __future__ import annotations

import json
import socket

import httpx
import pytest
import trio

from crewboard.web.edge import MAX_HEADER_BYTES, MAX_URL_BYTES, SERVER_HEAD_LIMIT_BYTES

ASK = {"templateId": "ask", "inputs": {"question": "What is a crew?"}}
SCHEDULE = {**ASK, "name": "nightly", "rule": "@daily", "timezone": "UTC"}
SESSION = {"agent": "assistant", "sessionName": "s"}

# Raw JSON text (escapes as a client would send them), with what must come back.
UNSTORABLE = {
    '"\\ud800"': "unpaired surrogate (U+D800)",
    '"tail \\udfff"': "unpaired surrogate (U+DFFF)",
    '"\\udc00\\ud800"': "unpaired surrogate",
    '"a\\u0000b"': "NUL",
}
BIDI = ['"\\u202eevil.exe"', '"name \\u2066x\\u2069"', '"\\u202a"']
# Odd but storable: must be taken (or refused for their own reasons), never a 5xx.
ODD = [
    '"\\ud83d\\ude00 paired surrogates are an emoji"',
    '"\\u001b[31mred\\u001b[0m"',
    '"\\ufeffbom"',
    '"\\u200b"',
    '"\' OR 1=1 --"',
    '"../../etc/passwd"',
    '"<script>alert(1)</script>"',
    '"' + "x" * 5000 + '"',
    '"\\u0085\\u2028\\u2029"',
    "12",
    "null",
    "[]",
    "{}",
]


def _body(template: dict, path: str, raw_value: str) -> bytes:
    """``template`` as JSON with the value at ``path`` (dotted) replaced by
    the raw JSON text ``raw_value``."""
    marker = "\u0000MARK\u0000"
    value = json.loads(json.dumps(template))
    node = value
    *parents, last = path.split(".")
    for key in parents:
        node = node[key]
    node[last] = marker
    return json.dumps(value).replace(json.dumps(marker), raw_value).encode()


async def _post_raw(client: httpx.AsyncClient, method: str, path: str, body: bytes):
    return await client.request(
        method, path, content=body, headers={"Content-Type": "application/json"}
    )


def _assert_error_shape(response: httpx.Response) -> dict:
    assert response.headers["content-type"].startswith("application/json"), response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details"}
    return error


async def _string_routes(client: httpx.AsyncClient) -> list[tuple[str, str, dict, list[str]]]:
    """(method, path, a valid body, its string fields) of every route that
    takes strings in a body, with ids of things the caller owns."""
    crew = await client.post("/api/jobs", json=ASK)
    assert crew.status_code == 201, crew.text
    job_id = crew.json()["jobIds"][0]
    schedule = await client.post("/api/schedules", json=SCHEDULE)
    assert schedule.status_code == 201, schedule.text
    schedule_id = schedule.json()["id"]
    session = await client.post("/api/session/create", json={"agent": "assistant"})
    assert session.status_code in (200, 201), session.text
    session_id = session.json()["id"]
    return [
        ("POST", "/api/jobs", {**ASK, "title": "t"}, ["templateId", "title", "inputs.question"]),
        ("POST", f"/api/jobs/{job_id}/comments", {"text": "hi"}, ["text"]),
        ("POST", f"/api/jobs/{job_id}/redo", {"feedback": "again"}, ["feedback"]),
        ("POST", "/api/tokens", {"name": "laptop"}, ["name"]),
        (
            "POST",
            "/api/schedules",
            SCHEDULE,
            ["name", "templateId", "rule", "timezone", "inputs.question"],
        ),
        (
            "PATCH",
            f"/api/schedules/{schedule_id}",
            {"name": "renamed"},
            ["name"],
        ),
        (
            "POST",
            "/api/session/create",
            SESSION,
            ["agent", "sessionName", "modelSpec"],
        ),
        ("POST", f"/api/session/newUserMessage/{session_id}", {"message": "hi"}, ["message"]),
    ]


async def _counts(client: httpx.AsyncClient) -> tuple[int, int, int]:
    jobs = (await client.get("/api/jobs", params={"limit": 200})).json()["jobs"]
    schedules = (await client.get("/api/schedules")).json()
    tokens = (await client.get("/api/tokens")).json()
    schedule_list = schedules["schedules"] if isinstance(schedules, dict) else schedules
    return len(jobs), len(schedule_list), len(tokens)


async def test_unstorable_strings_are_refused_in_every_field_that_takes_strings(as_alice):
    routes = await _string_routes(as_alice)
    before = await _counts(as_alice)
    for method, path, valid, string_fields in routes:
        for field in string_fields:
            for raw, said in UNSTORABLE.items():
                response = await _post_raw(as_alice, method, path, _body(valid, field, raw))
                assert response.status_code == 422, (method, path, field, raw, response.text)
                error = _assert_error_shape(response)
                assert said in error["details"]["fields"][field], error
    # Also as keys of an object the route reads whole.
    response = await _post_raw(
        as_alice, "POST", "/api/jobs", b'{"templateId": "ask", "inputs": {"\\ud800": "x"}}'
    )
    assert response.status_code == 422
    assert "inputs.\ufffd" in _assert_error_shape(response)["details"]["fields"]
    assert await _counts(as_alice) == before


async def test_bidi_controls_are_refused_in_names_and_titles(as_alice):
    routes = {
        ("POST", "/api/jobs"): ({**ASK, "title": "t"}, "title"),
        ("POST", "/api/tokens"): ({"name": "n"}, "name"),
        ("POST", "/api/schedules"): (SCHEDULE, "name"),
        ("POST", "/api/session/create"): (SESSION, "sessionName"),
    }
    before = await _counts(as_alice)
    for (method, path), (valid, field) in routes.items():
        for raw in BIDI:
            response = await _post_raw(as_alice, method, path, _body(valid, field, raw))
            assert response.status_code == 422, (path, raw, response.text)
            assert field in _assert_error_shape(response)["details"]["fields"]
    assert await _counts(as_alice) == before


async def test_a_title_rendered_from_inputs_shows_no_bidi_controls(as_alice):
    crew = await as_alice.post(
        "/api/jobs", json={"templateId": "ask", "inputs": {"question": "\u202eevil\u202c why?"}}
    )
    assert crew.status_code == 201, crew.text
    job = (await as_alice.get(f"/api/jobs/{crew.json()['jobIds'][0]}")).json()["job"]
    assert not any(ch in job["title"] for ch in "\u202a\u202b\u202c\u202d\u202e")


async def test_odd_strings_never_make_a_server_error(as_alice):
    routes = await _string_routes(as_alice)
    for method, path, valid, string_fields in routes:
        for field in string_fields:
            for raw in [*ODD, *BIDI, *UNSTORABLE]:
                response = await _post_raw(as_alice, method, path, _body(valid, field, raw))
                assert response.status_code < 500, (method, path, field, raw, response.text)
                if response.status_code >= 400:
                    _assert_error_shape(response)


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 1000 + b"]" * 1000,
        b'{"email": ' + b"[" * 1000 + b"]" * 1000 + b', "password": "x"}',
        b'{"a":' * 1000 + b"1" + b"}" * 1000,
        b'{"email": "a@x.test", "password": ' + b"[" * 100 + b"]" * 100 + b"}",
    ],
)
async def test_deep_json_is_a_400_on_the_anonymous_login(anon, body):
    response = await _post_raw(anon, "POST", "/auth/login", body)
    assert response.status_code == 400, response.text
    error = _assert_error_shape(response)
    assert error["code"] == "bad_request"


async def test_deep_inputs_name_the_field(as_alice):
    body = b'{"templateId": "ask", "inputs": {"question": ' + b"[" * 40 + b"]" * 40 + b"}}"
    response = await _post_raw(as_alice, "POST", "/api/jobs", body)
    assert response.status_code == 400
    (field,) = _assert_error_shape(response)["details"]["fields"]
    assert field.startswith("inputs.question[0]")


@pytest.mark.parametrize(
    ("when", "said"),
    [
        ("0001-01-01T00:00:00+14:00", "years 1 to 9999"),
        ("9999-12-31T23:59:59-14:00", "years 1 to 9999"),
        ("9999-12-31T23:59:59.999999Z", "within ten years"),
        ("2026-02-30T00:00:00Z", "RFC 3339"),
        ("2026-01-01T00:00:00+24:00", "RFC 3339"),
        ("2026-01-01T00:00:00", "UTC offset"),
        ("nan", "RFC 3339"),
        ("", "RFC 3339"),
    ],
)
async def test_impossible_dates_are_422_naming_scheduled_at(as_alice, when, said):
    before = await _counts(as_alice)
    response = await as_alice.post("/api/jobs", params={"scheduledAt": when}, json=ASK)
    assert response.status_code == 422, response.text
    assert said in _assert_error_shape(response)["details"]["fields"]["scheduledAt"]
    assert await _counts(as_alice) == before


async def test_far_past_dates_run_now(as_alice):
    response = await as_alice.post(
        "/api/jobs", params={"scheduledAt": "0001-01-01T14:00:00+14:00"}, json=ASK
    )
    assert response.status_code == 201, response.text


def _raw_exchange(base_url: str, head: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send a request head as bytes (httpx refuses URLs this long) and read
    one response: its status, headers and body."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        try:
            sock.sendall(head)
        except OSError:
            pass  # refused before the server read it all: the answer is waiting
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed before a response: {data!r}"
            data += chunk
        top, _, body = data.partition(b"\r\n\r\n")
        status_line, *lines = top.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = sock.recv(65536)
            assert chunk, "connection closed mid-body"
            body += chunk
        return int(status_line.split()[1]), headers, body


async def _raw(base_url: str, head: str) -> tuple[int, dict[str, str], bytes]:
    return await trio.to_thread.run_sync(_raw_exchange, base_url, head.encode())


@pytest.mark.parametrize("url_bytes", [MAX_URL_BYTES + 1, 100_000, SERVER_HEAD_LIMIT_BYTES // 2])
async def test_an_over_long_url_is_a_json_414(server, url_bytes):
    status, headers, body = await _raw(
        server, f"GET /api/jobs?cursor={'x' * url_bytes} HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    assert status == 414
    assert headers["content-type"].startswith("application/json")
    error = json.loads(body)["error"]
    assert error["code"] == "uri_too_long" and error["details"]["limit"] == MAX_URL_BYTES


@pytest.mark.parametrize("header_bytes", [MAX_HEADER_BYTES + 1, SERVER_HEAD_LIMIT_BYTES // 2])
async def test_over_large_headers_are_a_json_431(anon, header_bytes):
    response = await anon.get("/auth/me", headers={"Cookie": "c=" + "x" * header_bytes})
    assert response.status_code == 431
    error = _assert_error_shape(response)
    assert error["code"] == "header_fields_too_large"


async def test_past_the_servers_own_limit_hypercorn_answers_bare(server):
    """Documents the one answer that is not ours: a head beyond what
    Hypercorn buffers is refused inside its HTTP/1.1 layer (h11), before the
    app is called, with an empty 431 and the connection closed."""
    status, headers, body = await _raw(
        server, f"GET /?{'x' * (2 * SERVER_HEAD_LIMIT_BYTES)} HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    assert (status, headers["content-length"], body) == (431, "0", b"")


async def test_control_characters_in_the_url_are_refused(as_alice):
    response = await as_alice.get("/api/jobs", params={"cursor": "a\x00b"})
    assert response.status_code == 422
    assert "cursor" in _assert_error_shape(response)["details"]["fields"]
    # No route or resource has a control character in its path.
    response = await as_alice.get("/api/session/replay/a%00b")
    assert response.status_code == 404
    assert "control character" in _assert_error_shape(response)["message"]
    response = await as_alice.delete("/api/session/byName/a%1bb")
    assert response.status_code == 404


# Query values as sent on the wire (percent-encoded), odd and hostile.
ODD_QUERY = [
    "%ED%A0%80",  # a lone surrogate's UTF-8 bytes: not UTF-8
    "%FF%FE",
    "%E2%80%AE",
    "%00",
    "%1B%5B31m",
    "%0A",
    "9" * 40,
    "-1",
    "1e400",
    "NaN",
    "%27%20OR%201%3D1",
    "x" * 4000,
    "",
]


async def test_odd_query_values_never_make_a_server_error(as_alice):
    crew = await as_alice.post("/api/jobs", json=ASK)
    job_id = crew.json()["jobIds"][0]
    queries = [
        ("/api/jobs", "cursor"),
        ("/api/jobs", "status"),
        ("/api/jobs", "limit"),
        ("/api/jobs", "mine"),
        ("/api/schedules", "mine"),
        ("/api/schedules/preview?timezone=UTC", "rule"),
        ("/api/schedules/preview?rule=@daily", "timezone"),
        ("/api/schedules/preview?rule=@daily", "count"),
        (f"/api/jobs/{job_id}/artifact", "format"),
        (f"/api/jobs/{job_id}/artifact", "download"),
    ]
    for path, name in queries:
        for value in ODD_QUERY:
            joined = "&" if "?" in path else "?"
            response = await as_alice.get(f"{path}{joined}{name}={value}")
            assert response.status_code < 500, (path, name, value, response.text)
            if response.status_code >= 400:
                _assert_error_shape(response)
    for value in ODD_QUERY:
        for response in (
            await as_alice.get(f"/api/session/replay/{value or 'x'}"),
            await as_alice.delete(f"/api/session/byName/{value or 'x'}"),
        ):
            assert response.status_code < 500, (value, response.text)
            _assert_error_shape(response)
