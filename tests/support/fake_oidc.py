"""A fake OpenID Connect provider on a loopback port, standing in for Google.

It serves discovery, a JWKS, an authorization endpoint that approves at once
(redirecting back with a code and the state, after recording the nonce and
the PKCE challenge) and a token endpoint that checks the client's secret, the
redirect URI and the PKCE verifier before returning a signed ID token.

Tests steer it through plain attributes: change the ID token's claims, sign
with another key, deny consent, or make an endpoint fail.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from quart import Quart, Response, jsonify, redirect, request
from quart_trio import QuartTrio


def new_signing_key(kid: str) -> RSAKey:
    """An RSA key for signing ID tokens, named ``kid``."""
    return RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"})


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass
class Grant:
    """What the authorization endpoint recorded for one code."""

    client_id: str
    redirect_uri: str
    scope: str
    nonce: str
    code_challenge: str
    code_challenge_method: str


@dataclass
class FakeOidcProvider:
    client_id: str
    client_secret: str
    signing_key: RSAKey
    # The keys the JWKS publishes (public parts only).
    published_keys: list[RSAKey] = field(default_factory=list)
    base_url: str = ""
    # The person who consents at the authorization endpoint.
    subject: str = "google-sub-1"
    email: str = "alice@example.test"
    email_verified: Any = True
    name: str = "Alice Liddell"
    hosted_domain: str | None = None
    # Knobs for failure tests.
    deny_consent: bool = False
    discovery_status: int | None = None
    token_status: int | None = None
    claim_overrides: dict[str, Any] = field(default_factory=dict)
    # What happened, for assertions.
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    token_requests: int = 0
    jwks_requests: int = 0
    issued_id_tokens: list[str] = field(default_factory=list)
    grants: dict[str, Grant] = field(default_factory=dict)

    @property
    def issuer(self) -> str:
        return self.base_url

    @property
    def discovery_url(self) -> str:
        return f"{self.base_url}/.well-known/openid-configuration"

    # Set by open_fake_oidc: ask the server to stop, and learn that it has.
    _stop: trio.Event = field(default_factory=trio.Event)
    _stopped: trio.Event = field(default_factory=trio.Event)

    def rotate_key(self, key: RSAKey) -> None:
        """Publish and sign with a new key; the old one stays published."""
        self.signing_key = key
        self.published_keys.append(key)

    async def shut_down(self) -> None:
        """Stop serving: from now on the provider's port refuses connections."""
        self._stop.set()
        await self._stopped.wait()

    def id_token_claims(self, grant: Grant) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.client_id,
            "azp": self.client_id,
            "sub": self.subject,
            "email": self.email,
            "email_verified": self.email_verified,
            "name": self.name,
            "iat": now,
            "exp": now + 3600,
            "nonce": grant.nonce,
        }
        if self.hosted_domain is not None:
            claims["hd"] = self.hosted_domain
        claims.update(self.claim_overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def app(self) -> Quart:
        app = QuartTrio("fake_oidc")

        @app.get("/.well-known/openid-configuration")
        async def discovery() -> Any:
            if self.discovery_status is not None:
                return jsonify({"error": "unavailable"}), self.discovery_status
            return jsonify(
                {
                    "issuer": self.issuer,
                    "authorization_endpoint": f"{self.base_url}/authorize",
                    "token_endpoint": f"{self.base_url}/token",
                    "jwks_uri": f"{self.base_url}/jwks",
                    "response_types_supported": ["code"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "scopes_supported": ["openid", "email", "profile"],
                    "token_endpoint_auth_methods_supported": [
                        "client_secret_post",
                        "client_secret_basic",
                    ],
                    "code_challenge_methods_supported": ["S256", "plain"],
                }
            )

        @app.get("/jwks")
        async def jwks() -> Any:
            self.jwks_requests += 1
            return jsonify(KeySet(list(self.published_keys)).as_dict(private=False))

        @app.get("/authorize")
        async def authorize() -> Any:
            args = request.args.to_dict()
            self.authorize_requests.append(args)
            redirect_uri = args.get("redirect_uri", "")
            if args.get("client_id") != self.client_id or not redirect_uri:
                return Response("unknown client", status=400)
            scopes = args.get("scope", "").split(" ")
            back: dict[str, str] = {"state": args.get("state", "")}
            if self.deny_consent:
                back["error"] = "access_denied"
            elif args.get("response_type") != "code" or "openid" not in scopes:
                back["error"] = "invalid_request"
            else:
                code = secrets.token_urlsafe(16)
                self.grants[code] = Grant(
                    client_id=args["client_id"],
                    redirect_uri=redirect_uri,
                    scope=args.get("scope", ""),
                    nonce=args.get("nonce", ""),
                    code_challenge=args.get("code_challenge", ""),
                    code_challenge_method=args.get("code_challenge_method", ""),
                )
                back["code"] = code
            return redirect(f"{redirect_uri}?{urlencode(back)}")

        @app.post("/token")
        async def token() -> Any:
            self.token_requests += 1
            if self.token_status is not None:
                return jsonify({"error": "server_error"}), self.token_status
            form = await request.form
            client_id, client_secret = _client_credentials(request.headers, form)
            if client_id != self.client_id or client_secret != self.client_secret:
                return jsonify({"error": "invalid_client"}), 401
            if form.get("grant_type") != "authorization_code":
                return jsonify({"error": "unsupported_grant_type"}), 400
            # Codes are single use, as at a real provider.
            grant = self.grants.pop(form.get("code", ""), None)
            if grant is None or grant.redirect_uri != form.get("redirect_uri"):
                return jsonify({"error": "invalid_grant"}), 400
            verifier = form.get("code_verifier", "")
            if grant.code_challenge_method != "S256" or s256(verifier) != grant.code_challenge:
                return jsonify({"error": "invalid_grant", "error_description": "PKCE"}), 400
            header = {"alg": "RS256", "kid": self.signing_key.kid}
            id_token = jwt.encode(header, self.id_token_claims(grant), self.signing_key)
            self.issued_id_tokens.append(id_token)
            return jsonify(
                {
                    "access_token": secrets.token_urlsafe(24),
                    "token_type": "Bearer",
                    "expires_in": 3600,
                    "scope": grant.scope,
                    "id_token": id_token,
                }
            )

        return app


def _client_credentials(headers: Any, form: Any) -> tuple[str | None, str | None]:
    scheme, _, value = headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "basic":
        user, _, password = base64.b64decode(value).decode().partition(":")
        return user, password
    return form.get("client_id"), form.get("client_secret")


@asynccontextmanager
async def open_fake_oidc(
    client_id: str, client_secret: str, signing_key: RSAKey | None = None
) -> AsyncIterator[FakeOidcProvider]:
    """Serve a fake provider on a free loopback port for the duration."""
    key = signing_key or new_signing_key("key-1")
    provider = FakeOidcProvider(client_id, client_secret, key, published_keys=[key])
    hc = HypercornConfig()
    hc.bind = ["127.0.0.1:0"]
    hc.accesslog = None
    hc.errorlog = None
    hc.graceful_timeout = 1.0

    async def run(task_status: trio.TaskStatus[list[str]]) -> None:
        await serve(
            provider.app(), hc, shutdown_trigger=provider._stop.wait, task_status=task_status
        )
        provider._stopped.set()

    async with trio.open_nursery() as nursery:
        binds = await nursery.start(run)
        provider.base_url = binds[0]
        try:
            yield provider
        finally:
            provider._stop.set()
