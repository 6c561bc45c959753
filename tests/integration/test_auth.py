"""Local sign-in, sessions, the profile route and the cookie's properties."""

from __future__ import annotations

import pytest

from tests.conftest import PASSWORD, client_for

# It opens boards outside the board fixtures (make_config, crewboard commands).
pytestmark = pytest.mark.board


async def test_login_sets_session_cookie_and_me_returns_profile(anon, alice):
    response = await anon.post("/auth/login", json={"email": alice.email, "password": PASSWORD})
    assert response.status_code == 200
    assert response.json() == {
        "id": alice.id,
        "email": alice.email,
        "name": "alice",
        "isAdmin": False,
        "authMethod": "local",
    }
    cookie = response.headers["set-cookie"].lower()
    assert "crewboard_session=" in cookie
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie
    me = await anon.get("/auth/me")
    assert me.json()["email"] == alice.email


async def test_login_accepts_a_form(anon, alice):
    response = await anon.post("/auth/login", data={"email": alice.email, "password": PASSWORD})
    assert response.status_code == 200
    assert (await anon.get("/auth/me")).json()["id"] == alice.id


async def test_email_is_case_insensitive(anon, alice):
    response = await anon.post(
        "/auth/login", json={"email": "  ALICE@Example.TEST ", "password": PASSWORD}
    )
    assert response.status_code == 200


async def test_bad_credentials_do_not_say_which_part_was_wrong(anon, alice):
    wrong_password = await anon.post(
        "/auth/login", json={"email": alice.email, "password": "nope nope nope"}
    )
    no_such_user = await anon.post(
        "/auth/login", json={"email": "ghost@example.test", "password": PASSWORD}
    )
    assert wrong_password.status_code == no_such_user.status_code == 401
    assert wrong_password.json() == no_such_user.json()
    assert wrong_password.json()["error"]["code"] == "unauthorized"
    assert (await anon.get("/auth/me")).json() is None


async def test_me_is_null_for_anonymous_callers(anon):
    response = await anon.get("/auth/me")
    assert response.status_code == 200 and response.json() is None


async def test_logout_revokes_the_server_side_session(server, alice):
    async with client_for(server) as client:
        await client.post("/auth/login", json={"email": alice.email, "password": PASSWORD})
        stolen = client.cookies.get("crewboard_session")
        response = await client.get("/auth/logout")
        assert response.status_code == 302 and response.headers["location"] == "/"
        assert (await client.get("/auth/me")).json() is None
    # The old cookie is dead on the server, not merely forgotten by the client.
    async with client_for(server, cookies={"crewboard_session": stolen}) as replay:
        assert (await replay.get("/auth/me")).json() is None
        assert (await replay.get("/api/tokens")).status_code == 401


async def test_forged_cookie_is_anonymous(server):
    async with client_for(server, cookies={"crewboard_session": "forged" * 10}) as client:
        assert (await client.get("/auth/me")).json() is None
        assert (await client.get("/api/tokens")).status_code == 401


async def test_expired_session_is_anonymous(server, alice):
    from crewboard.board.models import AuthSession
    from crewboard.clock import utcnow

    async with client_for(server) as client:
        await client.post("/auth/login", json={"email": alice.email, "password": PASSWORD})
        AuthSession.update(expires_at=utcnow()).execute()
        assert (await client.get("/auth/me")).json() is None


async def test_failed_logins_are_rate_limited(anon, alice, config):
    for _ in range(config.login_attempts):
        response = await anon.post(
            "/auth/login", json={"email": alice.email, "password": "wrong password"}
        )
        assert response.status_code == 401
    response = await anon.post("/auth/login", json={"email": alice.email, "password": PASSWORD})
    assert response.status_code == 429
    assert int(response.headers["retry-after"]) >= 1
    assert response.json()["error"]["code"] == "too_many_requests"


async def test_cross_origin_unsafe_requests_with_the_cookie_are_refused(server, alice):
    async with client_for(server) as client:
        await client.post("/auth/login", json={"email": alice.email, "password": PASSWORD})
        for headers in ({"Origin": "http://evil.example"}, {"Origin": ""}):
            response = await client.post("/api/tokens", json={"name": "x"}, headers=headers)
            assert response.status_code == 403, headers
        # Referer names the origin when Origin is absent.
        client.headers.pop("Origin")
        response = await client.post(
            "/api/tokens", json={"name": "x"}, headers={"Referer": f"{server}/profile"}
        )
        assert response.status_code == 201
        response = await client.post("/api/tokens", json={"name": "x"})
        assert response.status_code == 403
    tokens = await _token_names(server, alice)
    assert tokens == ["x"]


async def _token_names(server, account):
    async with client_for(server) as client:
        await client.post("/auth/login", json={"email": account.email, "password": PASSWORD})
        return [t["name"] for t in (await client.get("/api/tokens")).json()]


async def test_login_body_must_be_well_formed(anon):
    assert (await anon.post("/auth/login", content=b"{nope")).status_code == 400
    assert (await anon.post("/auth/login", json=["a"])).status_code == 400
    assert (await anon.post("/auth/login", json={"email": 1, "password": 2})).status_code == 400
    response = await anon.post("/auth/login", json={"email": "a' OR 1=1 --", "password": "x"})
    assert response.status_code == 401


async def test_google_is_off_without_configuration(anon):
    assert (await anon.get("/auth/google-enabled")).json() == {"enabled": False}


async def test_pages_send_anonymous_visitors_to_login_and_serve_the_signed_in(anon, as_alice):
    for path in ("/profile", "/chat", "/board", "/jobs/1", "/templates", "/schedules"):
        response = await anon.get(path)
        assert response.status_code == 302, path
        assert response.headers["location"] == f"/login?next={path}"
        page = await as_alice.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in page.headers["content-security-policy"]
    assert (await anon.get("/login")).status_code == 200
    assert (await anon.get("/jobs/not-a-number")).status_code == 404


async def test_an_https_base_url_makes_the_cookie_secure_and_sets_the_origin(tmp_path, nursery):
    import dataclasses

    import trio

    from crewboard.bootstrap import open_home
    from crewboard.web.server import serve_web
    from tests.conftest import add_user, make_config

    config = dataclasses.replace(
        make_config(tmp_path / "home"), base_url="https://crew.example.test"
    )
    open_home(config)
    account = add_user(config, "sec@example.test")
    stop = trio.Event()
    (url,) = await nursery.start(
        lambda task_status: serve_web(config, shutdown=stop, task_status=task_status)
    )
    try:
        async with client_for(url, headers={"Origin": "https://crew.example.test"}) as client:
            response = await client.post(
                "/auth/login", json={"email": account.email, "password": PASSWORD}
            )
            assert response.status_code == 200
            assert "secure" in response.headers["set-cookie"].lower()
            cookie = response.cookies["crewboard_session"]
        # The configured origin, not the Host, is what cookie writes must name.
        async with client_for(url, cookies={"crewboard_session": cookie}) as client:
            refused = await client.post("/api/tokens", json={"name": "x"})
            assert refused.status_code == 403
            allowed = await client.post(
                "/api/tokens", json={"name": "x"}, headers={"Origin": "https://crew.example.test"}
            )
            assert allowed.status_code == 201
    finally:
        stop.set()
