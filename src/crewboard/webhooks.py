"""Webhooks as the wire sees them, per Standard Webhooks
(https://www.standardwebhooks.com): what a target URL may be, the signing
secret's form, and the three headers that sign a delivery.

A delivery is signed with HMAC-SHA256 over ``"{id}.{timestamp}.{body}"``
under the job owner's secret (``whsec_`` + base64 of 32 random bytes), sent
as ``webhook-signature: v1,<base64>``. The same ``webhook-id`` goes with every
attempt of one delivery, so a receiver can drop the duplicates that
at-least-once delivery brings; ``webhook-timestamp`` is the attempt's own
time, so a receiver can refuse replays of old ones.

Where a delivery goes is checked twice: :func:`check_url` when a user names
the URL (its form, and where its host points now) and again by the sender
just before each attempt, since DNS answers change
(:mod:`crewboard.netguard` decides which addresses are internal).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from crewboard.netguard import AddressRefused, AllowList, IPAddress, Resolver, vet

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
MAX_URL_CHARS = 2048
ALLOW_SETTING = "CREWBOARD_WEBHOOK_ALLOW"


class BadWebhookUrl(ValueError):
    """A webhook URL crewboard will not deliver to; the message says why, for
    the person who named it."""


def new_secret() -> str:
    """A fresh signing secret in the form Standard Webhooks libraries read."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def new_message_id() -> str:
    """A ``webhook-id``: unique per delivery, the same on each of its attempts."""
    return "msg_" + secrets.token_urlsafe(18)


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header's value for one attempt."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(
    secrets: tuple[str, ...], message_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The headers of one attempt of a delivery, signed with each of
    ``secrets`` (space-separated signatures, as the standard allows while a
    secret is being rotated)."""
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(
            signature(secret, message_id, timestamp, body) for secret in secrets
        ),
    }


def check_url_form(url: object) -> str:
    """``url`` as a webhook target, or BadWebhookUrl: an absolute http(s) URL
    with a host, no credentials, no fragment, printable ASCII, at most
    :data:`MAX_URL_CHARS`. Says nothing of where the host points."""
    if not isinstance(url, str):
        raise BadWebhookUrl("must be a string")
    url = url.strip()
    if not url:
        raise BadWebhookUrl("must not be empty")
    if len(url) > MAX_URL_CHARS:
        raise BadWebhookUrl(f"must be at most {MAX_URL_CHARS} characters")
    if not url.isascii() or not url.isprintable() or " " in url:
        raise BadWebhookUrl("must be printable ASCII without spaces (percent-encode the rest)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise BadWebhookUrl(f"is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise BadWebhookUrl("must be an http or https URL")
    if not parts.hostname:
        raise BadWebhookUrl("must name a host")
    if parts.username is not None or parts.password is not None:
        raise BadWebhookUrl("must not carry a user name or password")
    if parts.fragment:
        raise BadWebhookUrl("must not have a #fragment")
    if port == 0:
        raise BadWebhookUrl("must not name port 0")
    return url


def target(url: str) -> tuple[str, int]:
    """The host and port a checked URL connects to."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return host, parts.port or (443 if parts.scheme == "https" else 80)


def vet_url(url: str, allow: AllowList, resolver: Resolver) -> IPAddress:
    """The address to deliver ``url`` to, or BadWebhookUrl: a bad form, a
    host that does not resolve, or an internal address not allow-listed."""
    url = check_url_form(url)
    host, port = target(url)
    try:
        return vet(host, port, allow, resolver, ALLOW_SETTING)
    except AddressRefused as exc:
        raise BadWebhookUrl(str(exc)) from None


def check_url(url: object, allow: AllowList, resolver: Resolver) -> str:
    """A webhook URL a user has just named, checked in full; BadWebhookUrl
    says what is wrong with it."""
    checked = check_url_form(url)
    vet_url(checked, allow, resolver)
    return checked
