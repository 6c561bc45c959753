"""Google sign-in against a fake OpenID Connect provider on a loopback port:
the whole redirect dance driven hop by hop, account provisioning and reuse,
and every way the flow must fail closed — back on ``/login`` with a message,
with no session created."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest
import trio
from joserfc.jwk import RSAKey

from crewboard.board import db
from crewboard.board import users as board_users
from crewboard.board.models import AuthSession, User
from crewboard.clock import utcnow
from crewboard.web.auth import google
from tests.conftest import make_config
from tests.support.fake_oidc import FakeOidcProvider, new_signing_key, open_fake_oidc

# It opens boards outside the board fixtures (make_config, crewboard commands).
pytestmark = pytest.mark.board

CLIENT_ID = "crewboard-test.apps.example"
CLIENT_SECRET = "fake-client-secret-do-not-log"
ALLOWED_DOMAINS = ("example.test",)


# --- fixtures -----------------------------------------------------------------


@pytest.fixture(scope="module")
def signing_key() -> RSAKey:
    return new_signing_key("key-1")


@pytest.fixture(scope="module")
def spare_key() -> RSAKey:
    """A second key of the provider's, for rotation."""
    return new_signing_key("key-2")


@pytest.fixture(scope="module")
def impostor_key() -> RSAKey:
    """Someone else's key, claiming the provider's key id."""
    return new_signing_key("key-1")


@pytest.fixture
async def provider(signing_key: RSAKey) -> AsyncIterator[FakeOidcProvider]:
    async with open_fake_oidc(CLIENT_ID, CLIENT_SECRET, signing_key) as provider:
        yield provider


@pytest.fixture
def google_settings() -> dict[str, Any]:
    """Configuration on top of the Google defaults; tests parametrize it."""
    return {}


@pytest.fixture
async def google_server(
    tmp_path: Path, provider: FakeOidcProvider, google_settings: dict[str, Any], nursery
) -> AsyncIterator[str]:
    """crewboard with Google sign-in pointed at the fake provider; yields its URL."""
    from crewboard.web.server import serve_web

    settings: dict[str, Any] = {
        "google_client_id": CLIENT_ID,
        "google_client_secret": CLIENT_SECRET,
        "google_discovery_url": provider.discovery_url,
        "google_allowed_domains": ALLOWED_DOMAINS,
        **google_settings,
    }
    config = make_config(tmp_path / "home", **settings)
    stop = trio.Event()
    binds = await nursery.start(partial(serve_web, config, shutdown=stop))
    yield binds[0]
    stop.set()


class Browser:
    """An HTTP client that follows redirects by hand, so each hop is visible."""

    def __init__(self, server: str, cookies: dict[str, str] | None = None) -> None:
        self.server = server
        self.client = httpx.AsyncClient(base_url=server, cookies=cookies, timeout=10)

    async def __aenter__(self) -> Browser:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()

    async def start(self) -> str:
        """Ask crewboard to sign in with Google; returns the provider URL."""
        response = await self.client.get("/auth/google")
        assert response.status_code == 302, response.text
        return response.headers["location"]

    async def consent(self, authorize_url: str) -> str:
        """Visit the provider; returns where it sends the browser back to."""
        response = await self.client.get(authorize_url)
        assert response.status_code == 302, response.text
        return response.headers["location"]

    async def finish(self, callback_url: str) -> httpx.Response:
        return await self.client.get(callback_url)

    async def sign_in(self) -> httpx.Response:
        return await self.finish(await self.consent(await self.start()))

    async def me(self) -> dict[str, Any] | None:
        return (await self.client.get("/auth/me")).json()


def signed_in(response: httpx.Response) -> None:
    assert response.status_code == 302, response.text
    assert response.headers["location"] == "/profile"
    assert "crewboard_session" in response.cookies


def refused(response: httpx.Response) -> str:
    """Assert the browser was sent back to the login page without a session;
    returns the message the login page will show."""
    assert response.status_code == 302, response.text
    location = urlsplit(response.headers["location"])
    assert location.path == "/login"
    assert "crewboard_session" not in response.cookies
    return parse_qs(location.query)["error"][0]


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


async def session_count() -> int:
    return await db.call(lambda: AuthSession.select().count())


async def google_users() -> list[User]:
    return await db.call(lambda: list(User.select().where(User.google_sub.is_null(False))))


# --- success ------------------------------------------------------------------


async def test_first_sign_in_creates_the_account_and_a_google_session(google_server, provider):
    async with Browser(google_server) as browser:
        start = await browser.client.get("/auth/google")
        assert start.status_code == 302
        flow_cookie = start.headers["set-cookie"].lower()
        assert "crewboard_flow=" in flow_cookie
        assert "httponly" in flow_cookie and "samesite=lax" in flow_cookie

        authorize = urlsplit(start.headers["location"])
        assert f"{authorize.scheme}://{authorize.netloc}{authorize.path}" == (
            f"{provider.base_url}/authorize"
        )
        params = {k: v[0] for k, v in parse_qs(authorize.query).items()}
        assert params["response_type"] == "code"
        assert params["client_id"] == CLIENT_ID
        assert params["redirect_uri"] == f"{google_server}/auth/google/callback"
        assert params["scope"] == "openid email profile"
        assert params["code_challenge_method"] == "S256"
        assert len(params["code_challenge"]) == 43
        assert len(params["state"]) >= 32 and len(params["nonce"]) >= 32
        assert "client_secret" not in authorize.query

        response = await browser.finish(await browser.consent(start.headers["location"]))
        signed_in(response)
        session_cookie = response.headers["set-cookie"].lower()
        assert "httponly" in session_cookie and "samesite=lax" in session_cookie
        assert "crewboard_flow" not in browser.client.cookies  # the flow is spent

        me = await browser.me()
        assert me is not None
        assert me["email"] == "alice@example.test"
        assert me["name"] == "Alice Liddell"
        assert me["authMethod"] == "google"
        assert me["isAdmin"] is False
        assert (await browser.client.get("/profile")).status_code == 200

    [user] = await google_users()
    assert (user.email, user.google_sub, user.auth_method) == (
        "alice@example.test",
        "google-sub-1",
        "google",
    )
    assert user.password_hash is None


async def test_second_sign_in_reuses_the_account(google_server, provider):
    async with Browser(google_server) as first:
        signed_in(await first.sign_in())
        first_me = await first.me()
    async with Browser(google_server) as second:
        signed_in(await second.sign_in())
        second_me = await second.me()
    assert first_me is not None and second_me is not None
    assert first_me["id"] == second_me["id"]
    assert len(await google_users()) == 1
    assert await session_count() == 2
    # Discovery and keys were fetched once and then served from the cache.
    assert provider.jwks_requests == 1


async def test_a_local_account_with_the_same_email_is_linked(google_server, provider):
    local = await db.call(
        board_users.create_user, "alice@example.test", None, name="Alice", now=utcnow()
    )
    async with Browser(google_server) as browser:
        signed_in(await browser.sign_in())
        me = await browser.me()
    assert me is not None and me["id"] == local.id and me["authMethod"] == "google"


@pytest.mark.parametrize(
    ("email", "hosted_domain"),
    [
        ("Dave@EXAMPLE.test", None),  # the email's domain, any case
        ("carol@mail.example", "Example.Test"),  # the hosted domain, any case
    ],
)
async def test_allowed_domain_matches_hd_or_email_ignoring_case(
    google_server, provider, email, hosted_domain
):
    provider.email, provider.hosted_domain = email, hosted_domain
    async with Browser(google_server) as browser:
        signed_in(await browser.sign_in())


@pytest.mark.parametrize("google_settings", [{"google_allowed_domains": ()}])
async def test_no_allowed_domains_admits_any_verified_account(google_server, provider):
    provider.email = "mallory@elsewhere.test"
    async with Browser(google_server) as browser:
        signed_in(await browser.sign_in())


@pytest.mark.parametrize("google_settings", [{"base_url": "http://crewboard.test:8080"}])
async def test_redirect_uri_comes_from_the_base_url(google_server, provider):
    async with Browser(google_server) as browser:
        back = await browser.consent(await browser.start())
        assert back.startswith("http://crewboard.test:8080/auth/google/callback?")
        # The proxy in front of crewboard would deliver it here.
        parts = urlsplit(back)
        signed_in(await browser.finish(f"{google_server}{parts.path}?{parts.query}"))


async def test_rotated_signing_key_is_fetched_once(google_server, provider, spare_key):
    async with Browser(google_server) as browser:
        signed_in(await browser.sign_in())
    provider.rotate_key(spare_key)
    async with Browser(google_server) as browser:
        signed_in(await browser.sign_in())
    assert provider.jwks_requests == 2


# --- not configured -----------------------------------------------------------


async def test_routes_are_404_when_google_is_not_configured(anon):
    # ``anon`` is the default harness google_server, whose config has no Google client.
    for path in ("/auth/google", "/auth/google/callback?code=x&state=y"):
        response = await anon.get(path)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    assert (await anon.get("/auth/google-enabled")).json() == {"enabled": False}


# --- the flow itself ----------------------------------------------------------


async def test_wrong_state_is_refused(google_server, provider):
    async with Browser(google_server) as browser:
        back = await browser.consent(await browser.start())
        message = refused(await browser.finish(with_query(back, state="forged-state")))
        assert message == google.EXPIRED
        assert await browser.me() is None
    assert provider.token_requests == 0
    assert await session_count() == 0


async def test_replayed_state_is_refused_even_with_the_old_flow_cookie(google_server, provider):
    async with Browser(google_server) as browser:
        back = await browser.consent(await browser.start())
        old_flow = browser.client.cookies["crewboard_flow"]
        signed_in(await browser.finish(back))
        # The same browser no longer holds the flow.
        assert refused(await browser.finish(back)) == google.EXPIRED
    # Nor does a copy of the cookie taken before the callback work.
    async with Browser(google_server, cookies={"crewboard_flow": old_flow}) as replay:
        assert refused(await replay.finish(back)) == google.EXPIRED
        assert await replay.me() is None
    assert provider.token_requests == 1
    assert await session_count() == 1


async def test_callback_without_a_flow_is_refused(google_server, provider):
    # Login CSRF: someone else's code and state, delivered to this browser.
    async with Browser(google_server) as attacker:
        back = await attacker.consent(await attacker.start())
    async with Browser(google_server) as victim:
        assert refused(await victim.finish(back)) == google.EXPIRED
        assert await victim.me() is None
    assert provider.token_requests == 0


async def test_expired_flow_is_refused(google_server, provider, monkeypatch):
    async with Browser(google_server) as browser:
        back = await browser.consent(await browser.start())
        later = google.wall_clock() + google.FLOW_TTL_S + 1
        monkeypatch.setattr(google, "wall_clock", lambda: later)
        assert refused(await browser.finish(back)) == google.EXPIRED
    assert provider.token_requests == 0
    assert await session_count() == 0


async def test_consent_denied_at_the_provider(google_server, provider):
    provider.deny_consent = True
    async with Browser(google_server) as browser:
        back = await browser.consent(await browser.start())
        assert parse_qs(urlsplit(back).query)["error"] == ["access_denied"]
        assert refused(await browser.finish(back)) == google.CANCELLED
    assert provider.token_requests == 0
    assert await session_count() == 0


async def test_code_the_provider_does_not_know_is_refused(google_server, provider):
    async with Browser(google_server) as browser:
        back = await browser.consent(await browser.start())
        assert refused(await browser.finish(with_query(back, code="made-up"))) == google.FAILED
    assert await session_count() == 0


# --- the ID token -------------------------------------------------------------


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        pytest.param({"aud": "another-client"}, google.FAILED, id="wrong-audience"),
        pytest.param(
            {"aud": [CLIENT_ID, "another-client"], "azp": "another-client"},
            google.FAILED,
            id="another-authorized-party",
        ),
        pytest.param({"iss": "https://issuer.elsewhere.test"}, google.FAILED, id="wrong-issuer"),
        pytest.param({"exp": 1_000_000_000, "iat": 999_996_400}, google.FAILED, id="expired"),
        pytest.param({"iat": 4_000_000_000, "exp": 4_000_003_600}, google.FAILED, id="future"),
        pytest.param({"nonce": "not-the-nonce"}, google.FAILED, id="wrong-nonce"),
        pytest.param({"nonce": None}, google.FAILED, id="no-nonce"),
        pytest.param({"email_verified": False}, google.UNVERIFIED, id="unverified-email"),
        pytest.param({"email_verified": None}, google.UNVERIFIED, id="unstated-verification"),
        pytest.param(
            {"email": "mallory@elsewhere.test"}, google.DOMAIN_REFUSED, id="domain-not-allowed"
        ),
        pytest.param(
            {"email": "mallory@elsewhere.test", "hd": "elsewhere.test"},
            google.DOMAIN_REFUSED,
            id="hosted-domain-not-allowed",
        ),
    ],
)
async def test_bad_id_token_claims_are_refused(google_server, provider, claims, message):
    provider.claim_overrides = claims
    async with Browser(google_server) as browser:
        assert refused(await browser.sign_in()) == message
        assert await browser.me() is None
    assert provider.token_requests == 1
    assert await session_count() == 0
    assert await google_users() == []


async def test_bad_signature_is_refused(google_server, provider, impostor_key, caplog):
    provider.signing_key = impostor_key
    async with Browser(google_server) as browser:
        back = await browser.consent(await browser.start())
        assert refused(await browser.finish(back)) == google.FAILED
    assert await session_count() == 0
    assert "BadSignatureError" in caplog.text
    # The log says why, but carries no secret, code or token.
    code = parse_qs(urlsplit(back).query)["code"][0]
    for secret in (CLIENT_SECRET, code, *provider.issued_id_tokens):
        assert secret not in caplog.text


async def test_unknown_key_refetches_the_key_set_once(google_server, provider, spare_key):
    provider.signing_key = spare_key  # signed with a key the JWKS never publishes
    async with Browser(google_server) as browser:
        assert refused(await browser.sign_in()) == google.FAILED
    assert provider.jwks_requests == 2
    assert await session_count() == 0


async def test_disabled_account_is_refused(google_server, provider):
    async with Browser(google_server) as browser:
        signed_in(await browser.sign_in())
    await db.call(board_users.remove_user, "alice@example.test", now=utcnow())
    async with Browser(google_server) as browser:
        assert refused(await browser.sign_in()) == google.DISABLED
        assert await browser.me() is None
    assert await session_count() == 0


# --- the provider failing -----------------------------------------------------


async def test_token_endpoint_error_is_refused(google_server, provider, caplog):
    provider.token_status = 500
    async with Browser(google_server) as browser:
        assert refused(await browser.sign_in()) == google.UNAVAILABLE
    assert await session_count() == 0
    assert "token endpoint answered HTTP 500" in caplog.text
    assert CLIENT_SECRET not in caplog.text


async def test_discovery_error_is_refused_before_leaving(google_server, provider):
    provider.discovery_status = 503
    async with Browser(google_server) as browser:
        response = await browser.client.get("/auth/google")
        assert refused(response) == google.UNAVAILABLE
        assert "crewboard_flow" not in browser.client.cookies
    assert provider.authorize_requests == []


async def test_unreachable_provider_is_refused(google_server, provider):
    await provider.shut_down()
    async with Browser(google_server) as browser:
        with trio.fail_after(5):
            response = await browser.client.get("/auth/google")
        assert refused(response) == google.UNAVAILABLE


async def test_unexpected_error_still_lands_on_the_login_page(google_server, provider, monkeypatch):
    def broken(*args: object) -> None:
        raise RuntimeError("the board fell over")

    monkeypatch.setattr(board_users, "provision_google_user", broken)
    async with Browser(google_server) as browser:
        response = await browser.sign_in()
        assert refused(response) == google.FAILED
        assert "Traceback" not in response.text
    assert await session_count() == 0
