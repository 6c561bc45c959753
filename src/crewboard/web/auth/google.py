"""Google sign-in: the OAuth 2.0 authorization-code flow with PKCE and an
OpenID Connect ID token, at ``GET /auth/google`` and
``GET /auth/google/callback``. Both routes are 404 unless Google is configured.

authlib builds the authorization request (``state``, ``nonce``, the S256 code
challenge) and the token request; joserfc verifies the ID token against the
provider's JWKS. Both speak to the provider over plain ``httpx``, which runs
on trio. authlib's own httpx client integration is deliberately not used:
without the separate ``httpx2`` package, importing it raises a deprecation
warning (fatal where warnings are errors), and its fallback to ``httpx`` is
slated for removal.

The flow's secrets (state, nonce, PKCE verifier) ride in Quart's signed
session cookie ``crewboard_flow`` for at most :data:`FLOW_TTL_S` and are spent
by the first callback presenting them; spent states are also remembered in
the board (:mod:`crewboard.board.oauth_states`), so replaying an old copy of
the cookie does not work either, on this web node or any other.
Every failure ends on ``/login?error=…`` with a short message for the person;
the reason is logged here, never a token, code or secret.
"""

from __future__ import annotations

import functools
import hmac
import logging
import secrets
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

import httpx
from authlib.oauth2.auth import ClientAuth
from authlib.oauth2.client import OAuth2Client
from authlib.oauth2.rfc6749.parameters import prepare_token_request
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from quart import Blueprint, g, redirect, request, session
from quart.typing import ResponseReturnValue
from werkzeug.wrappers import Response as WerkzeugResponse

from crewboard.board import db, oauth_states
from crewboard.board import users as board_users
from crewboard.board.models import User
from crewboard.clock import utcnow
from crewboard.config import Config
from crewboard.errors import NotFound
from crewboard.web.auth.guards import SESSION_COOKIE, set_session_cookie
from crewboard.web.state import state

log = logging.getLogger(__name__)

bp = Blueprint("google", __name__, url_prefix="/auth")

SCOPE = "openid email profile"
FLOW_KEY = "google"
# How long a person may take at Google's consent screen.
FLOW_TTL_S = 600.0
# Discovery documents and key sets are refetched this often; an ID token
# signed by a key we have not seen refetches the key set at once.
METADATA_TTL_S = 3600.0
# Tolerated clock difference when checking exp and iat.
LEEWAY_S = 60
HTTP_TIMEOUT = httpx.Timeout(5.0, connect=3.0)
# OpenID Connect makes RS256 mandatory to implement and Google signs with it;
# accepting only it rules out "none" and HMAC-with-the-public-key tricks.
ID_TOKEN_ALGORITHMS = ("RS256",)
# Google documents both spellings for its ID tokens' issuer.
ISSUER_ALIASES = {"https://accounts.google.com": ("accounts.google.com",)}

UNAVAILABLE = "Google sign-in is unavailable right now; please try again later"
EXPIRED = "the Google sign-in expired or was already used; please try again"
CANCELLED = "Google sign-in was cancelled"
FAILED = "Google sign-in failed; please try again"
UNVERIFIED = "Google has not verified this account's email address"
DOMAIN_REFUSED = "this Google account's domain is not allowed to sign in here"
DISABLED = "this account is disabled"

# The wall clock that flow ages and token times are judged by (tests move it).
wall_clock: Callable[[], float] = time.time


class SignInRefused(Exception):
    """Google sign-in did not complete. Whose fault varies (the provider, the
    person, an attacker): ``message`` is for the person, ``reason`` for the
    log."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(reason)
        self.message = message
        self.reason = reason


class ProviderCache:
    """What the web process remembers about the provider: discovery documents
    and key sets by URL, each for ``ttl_s``."""

    def __init__(
        self, ttl_s: float = METADATA_TTL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self._documents: dict[str, tuple[float, Any]] = {}

    def get(self, url: str) -> Any | None:
        entry = self._documents.get(url)
        if entry is None or self.clock() - entry[0] >= self.ttl_s:
            return None
        return entry[1]

    def put(self, url: str, value: Any) -> None:
        self._documents[url] = (self.clock(), value)


def _cache() -> ProviderCache:
    return state().google_oidc


def _google_config() -> Config:
    config = state().config
    if not config.google_enabled:
        raise NotFound("Google sign-in is not configured on this server")
    return config


def _redirect_uri(config: Config) -> str:
    origin = (config.base_url or f"{request.scheme}://{request.host}").rstrip("/")
    return f"{origin}/auth/google/callback"


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # Loading the CA bundle costs milliseconds; do it once per process.
    return httpx.create_ssl_context()


def _http_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(
        verify=_tls_context(),
        timeout=HTTP_TIMEOUT,
        follow_redirects=False,
        headers={"Accept": "application/json"},
    )


def _printable(text: str, limit: int = 80) -> str:
    """Provider-supplied text made safe for one log line."""
    return "".join(ch if ch.isprintable() else "?" for ch in text[:limit])


def _redirect(location: str) -> WerkzeugResponse:
    response = redirect(location)
    response.headers["Cache-Control"] = "no-store"
    return response


def _refuse(exc: SignInRefused) -> WerkzeugResponse:
    log.warning(
        "google sign-in refused (request %s): %s", getattr(g, "request_id", "-"), exc.reason
    )
    return _redirect("/login?" + urlencode({"error": exc.message}))


# --- talking to the provider --------------------------------------------------


async def _get_json(client: httpx.AsyncClient, url: str, what: str) -> dict[str, Any]:
    try:
        response = await client.get(url)
        response.raise_for_status()
        document = response.json()
    except httpx.HTTPStatusError as exc:
        raise SignInRefused(
            UNAVAILABLE, f"{what} answered HTTP {exc.response.status_code}"
        ) from exc
    except httpx.HTTPError as exc:
        raise SignInRefused(UNAVAILABLE, f"{what} unreachable: {type(exc).__name__}") from exc
    except ValueError as exc:
        raise SignInRefused(UNAVAILABLE, f"{what} is not JSON") from exc
    if not isinstance(document, dict):
        raise SignInRefused(UNAVAILABLE, f"{what} is not a JSON object")
    return document


async def _discovery(client: httpx.AsyncClient, config: Config) -> dict[str, Any]:
    """The provider's OpenID configuration, from the cache or fetched."""
    url = config.google_discovery_url
    cache = _cache()
    document = cache.get(url)
    if document is not None:
        return document
    document = await _get_json(client, url, "discovery document")
    for key in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri"):
        if not isinstance(document.get(key), str) or not document[key]:
            raise SignInRefused(UNAVAILABLE, f"discovery document lacks {key}")
    # OpenID Connect Discovery §4.3: the issuer must be the URL it was found at.
    expected = document["issuer"].rstrip("/") + "/.well-known/openid-configuration"
    if url.rstrip("/") != expected:
        raise SignInRefused(UNAVAILABLE, "discovery document names a different issuer")
    cache.put(url, document)
    return document


async def _key_set(client: httpx.AsyncClient, jwks_uri: str, *, refresh: bool = False) -> KeySet:
    cache = _cache()
    keys = None if refresh else cache.get(jwks_uri)
    if keys is not None:
        return keys
    document = await _get_json(client, jwks_uri, "key set")
    try:
        keys = KeySet.import_key_set(document)  # type: ignore[arg-type]
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise SignInRefused(UNAVAILABLE, f"key set unusable: {type(exc).__name__}") from exc
    cache.put(jwks_uri, keys)
    return keys


def _client_auth_method(discovery: Mapping[str, Any]) -> str:
    # Discovery's default when the provider does not say is client_secret_basic.
    supported = discovery.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    if "client_secret_basic" in supported:
        return "client_secret_basic"
    if "client_secret_post" in supported:
        return "client_secret_post"
    raise SignInRefused(UNAVAILABLE, "token endpoint supports no client-secret authentication")


async def _exchange_code(
    client: httpx.AsyncClient,
    config: Config,
    discovery: Mapping[str, Any],
    code: str,
    flow: Mapping[str, Any],
) -> str:
    """Trade the authorization code (and the PKCE verifier) for an ID token."""
    body = prepare_token_request(
        "authorization_code",
        code=code,
        redirect_uri=flow["redirect_uri"],
        code_verifier=flow["verifier"],
    )
    auth = ClientAuth(
        config.google_client_id, config.google_client_secret, _client_auth_method(discovery)
    )
    headers = {"Content-Type": "application/x-www-form-urlencoded;charset=UTF-8"}
    url, headers, body = auth.prepare("POST", discovery["token_endpoint"], headers, body)
    try:
        response = await client.post(url, headers=headers, content=body)
    except httpx.HTTPError as exc:
        raise SignInRefused(
            UNAVAILABLE, f"token endpoint unreachable: {type(exc).__name__}"
        ) from exc
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if response.status_code != 200 or not isinstance(payload, dict):
        error = payload.get("error") if isinstance(payload, dict) else None
        detail = f" ({_printable(error, 40)})" if isinstance(error, str) else ""
        message = UNAVAILABLE if response.status_code >= 500 else FAILED
        raise SignInRefused(message, f"token endpoint answered HTTP {response.status_code}{detail}")
    id_token = payload.get("id_token")
    if not isinstance(id_token, str) or not id_token:
        raise SignInRefused(FAILED, "token response carries no id_token")
    return id_token


def _decode(id_token: str, keys: KeySet) -> dict[str, Any]:
    return jwt.decode(id_token, keys, algorithms=list(ID_TOKEN_ALGORITHMS)).claims


async def _verify_id_token(
    client: httpx.AsyncClient,
    config: Config,
    discovery: Mapping[str, Any],
    id_token: str,
    nonce: str,
) -> dict[str, Any]:
    """The ID token's claims, once its signature, issuer, audience, times and
    nonce check out."""
    jwks_uri = discovery["jwks_uri"]
    try:
        try:
            claims = _decode(id_token, await _key_set(client, jwks_uri))
        except InvalidKeyIdError:
            # The provider rotated its keys since we cached them: look once more.
            claims = _decode(id_token, await _key_set(client, jwks_uri, refresh=True))
    except JoseError as exc:
        raise SignInRefused(FAILED, f"ID token rejected: {type(exc).__name__}") from exc
    except ValueError as exc:
        raise SignInRefused(FAILED, "ID token is malformed") from exc

    issuer = discovery["issuer"]
    registry = jwt.JWTClaimsRegistry(
        now=lambda: int(wall_clock()),
        leeway=LEEWAY_S,
        iss={"essential": True, "values": [issuer, *ISSUER_ALIASES.get(issuer, ())]},
        aud={"essential": True, "value": config.google_client_id or ""},
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
        nonce={"essential": True, "value": nonce},
    )
    try:
        registry.validate(claims)
    except JoseError as exc:
        raise SignInRefused(FAILED, f"ID token claims rejected: {exc}") from exc
    # OpenID Connect Core §3.1.3.7: with several audiences, we must be the
    # authorized party.
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    azp = claims.get("azp")
    if (len(audiences) > 1 or azp is not None) and azp != config.google_client_id:
        raise SignInRefused(FAILED, "ID token names another authorized party")
    return claims


# --- deciding who it is -------------------------------------------------------


def email_verified(claims: Mapping[str, Any]) -> bool:
    # Some Google responses have carried the flag as a string.
    return claims.get("email_verified") in (True, "true")


def domain_allowed(claims: Mapping[str, Any], allowed: tuple[str, ...]) -> bool:
    """Whether the hosted domain (``hd``) or the email's domain is one of
    ``allowed``, ignoring case; an empty ``allowed`` admits everyone."""
    if not allowed:
        return True
    wanted = {domain.strip().lower() for domain in allowed}
    hd = claims.get("hd")
    email = claims.get("email")
    if isinstance(hd, str) and hd.lower() in wanted:
        return True
    return isinstance(email, str) and email.rpartition("@")[2].lower() in wanted


async def _take_flow(now: float) -> dict[str, Any]:
    """The flow this browser started, checked against the callback's state and
    spent, so it cannot be used twice."""
    flow = session.pop(FLOW_KEY, None)
    returned_state = request.args.get("state", "")
    if not isinstance(flow, dict) or not isinstance(flow.get("state"), str):
        raise SignInRefused(EXPIRED, "no sign-in flow in this browser")
    if not hmac.compare_digest(flow["state"].encode(), returned_state.encode()):
        raise SignInRefused(EXPIRED, "state does not match the flow")
    started = flow.get("started")
    if not isinstance(started, int | float) or not 0 <= now - started <= FLOW_TTL_S:
        raise SignInRefused(EXPIRED, "sign-in flow expired")
    spent = await db.call(
        oauth_states.spend_state, flow["state"], forget_at=started + FLOW_TTL_S, now=now
    )
    if not spent:
        raise SignInRefused(EXPIRED, "sign-in flow already used")
    return flow


async def _sign_in(config: Config) -> User:
    """Finish the flow and return the signed-in account (provisioned on first
    sign-in)."""
    flow = await _take_flow(wall_clock())
    error = request.args.get("error")
    if error is not None:
        message = CANCELLED if error == "access_denied" else FAILED
        raise SignInRefused(message, f"provider returned error {_printable(error, 40)!r}")
    code = request.args.get("code")
    if not code:
        raise SignInRefused(FAILED, "callback carries no code")

    async with _http_client() as client:
        discovery = await _discovery(client, config)
        id_token = await _exchange_code(client, config, discovery, code, flow)
        claims = await _verify_id_token(client, config, discovery, id_token, flow["nonce"])

    email = claims.get("email")
    if not isinstance(email, str) or "@" not in email:
        raise SignInRefused(FAILED, "ID token carries no email")
    if not email_verified(claims):
        raise SignInRefused(UNVERIFIED, "email not verified by the provider")
    if not domain_allowed(claims, config.google_allowed_domains):
        raise SignInRefused(
            DOMAIN_REFUSED, f"domain {_printable(email.rpartition('@')[2], 80)!r} not allowed"
        )
    name = claims.get("name") if isinstance(claims.get("name"), str) else ""
    user = await db.call(
        board_users.provision_google_user, claims["sub"], email, name, now=utcnow()
    )
    if user.disabled:
        raise SignInRefused(DISABLED, f"user {user.id} is disabled")
    return user


# --- routes -------------------------------------------------------------------


@bp.get("/google")
async def google_start() -> ResponseReturnValue:
    """Send the browser to the provider's consent screen."""
    config = _google_config()
    try:
        async with _http_client() as client:
            discovery = await _discovery(client, config)
    except SignInRefused as exc:
        return _refuse(exc)
    flow = {
        "state": secrets.token_urlsafe(32),
        "nonce": secrets.token_urlsafe(32),
        "verifier": secrets.token_urlsafe(48),
        "redirect_uri": _redirect_uri(config),
        "started": wall_clock(),
    }
    oauth = OAuth2Client(
        None,
        client_id=config.google_client_id,
        scope=SCOPE,
        redirect_uri=flow["redirect_uri"],
        code_challenge_method="S256",
    )
    url, _ = oauth.create_authorization_url(
        discovery["authorization_endpoint"],
        state=flow["state"],
        code_verifier=flow["verifier"],
        nonce=flow["nonce"],
    )
    session[FLOW_KEY] = flow
    return _redirect(url)


@bp.get("/google/callback")
async def google_callback() -> ResponseReturnValue:
    """Where the provider sends the browser back: sign in, or say why not."""
    config = _google_config()
    try:
        user = await _sign_in(config)
        old = request.cookies.get(SESSION_COOKIE)
        if old:
            await db.call(board_users.revoke_session, old)
        token = await db.call(board_users.create_session, user.id, "google", now=utcnow())
    except SignInRefused as exc:
        return _refuse(exc)
    except Exception as exc:
        log.error(
            "google sign-in failed unexpectedly (request %s)",
            getattr(g, "request_id", "-"),
            exc_info=exc,
        )
        return _refuse(SignInRefused(FAILED, "unexpected error"))
    log.info("google sign-in: user %s", user.id)
    response = _redirect("/profile")
    set_session_cookie(response, token)
    return response
