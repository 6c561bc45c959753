"""Webhooks as the wire sees them: our signatures checked by Standard
Webhooks' own verifier, the URLs a user may name, the addresses a delivery may
reach, and the retry schedule."""

from __future__ import annotations

import json
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from crewboard.board.webhooks import RetryPolicy, retry_delay_s
from crewboard.netguard import AllowList
from crewboard.webhooks import (
    BadWebhookUrl,
    check_url,
    check_url_form,
    new_message_id,
    new_secret,
    signed_headers,
    vet_url,
)

NAMES = {
    "hooks.example.test": ["93.184.215.14"],
    "inside.example.test": ["10.1.2.3"],
    "split.example.test": ["93.184.215.14", "127.0.0.1"],
    "metadata.example.test": ["169.254.169.254"],
    "mapped.example.test": ["::ffff:192.168.0.1"],
}


def resolver(host: str, port: int) -> list[str]:
    return NAMES.get(host, [])


def test_a_delivery_verifies_with_the_standard_webhooks_library() -> None:
    secret = new_secret()
    body = json.dumps({"type": "job.finished", "data": {"jobId": 1}}).encode()
    message_id = new_message_id()
    verifier = Webhook(secret)
    # The library checks the timestamp against its own clock: give it one near now.
    now = int(time.time())
    headers = signed_headers((secret,), message_id, now, body)
    assert verifier.verify(body, headers) == {"type": "job.finished", "data": {"jobId": 1}}
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        verifier.verify(body.replace(b"1", b"2"), headers)
    stale = signed_headers((secret,), message_id, now - 3600, body)
    with pytest.raises(WebhookVerificationError):
        verifier.verify(body, stale)


def test_while_a_secret_is_rotated_either_one_verifies() -> None:
    old, new = new_secret(), new_secret()
    body = b'{"type":"crew.finished"}'
    headers = signed_headers((new, old), new_message_id(), int(time.time()), body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(new).verify(body, headers) == Webhook(old).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)


def test_secrets_and_ids_are_fresh_and_in_the_standard_form() -> None:
    secrets = {new_secret() for _ in range(50)}
    assert len(secrets) == 50
    assert all(s.startswith("whsec_") and len(s) == 6 + 44 for s in secrets)
    ids = {new_message_id() for _ in range(50)}
    assert len(ids) == 50 and all(i.startswith("msg_") for i in ids)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("file:///etc/passwd", "http or https"),
        ("ftp://hooks.example.test/x", "http or https"),
        ("gopher://hooks.example.test/", "http or https"),
        ("javascript:alert(1)", "http or https"),
        ("hooks.example.test/x", "http or https"),
        ("http:///path", "host"),
        ("https://user:pw@hooks.example.test/", "user name or password"),
        ("https://hooks.example.test/#frag", "fragment"),
        ("https://hooks.example.test:99999/", "valid URL"),
        ("https://hooks.example.test:0/", "port 0"),
        ("https://hooks.example.test/" + "a" * 3000, "at most 2048"),
        ("https://hooks.example.test/\x00", "printable"),
        ("https://hööks.example.test/", "ASCII"),
        ("https://hooks.example.test/a b", "spaces"),
        ("", "empty"),
        (42, "string"),
        (None, "string"),
        (["https://hooks.example.test/"], "string"),
    ],
)
def test_malformed_urls_are_refused_with_a_reason(url: object, why: str) -> None:
    with pytest.raises(BadWebhookUrl, match=why):
        check_url_form(url)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:8000/hook", "loopback"),
        ("http://[::1]/hook", "loopback"),
        ("http://10.0.0.5/hook", "private"),
        ("http://192.168.1.1/hook", "private"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://metadata.example.test/", "link-local"),
        ("http://inside.example.test/", "private"),
        # One bad answer among good ones is enough to refuse.
        ("http://split.example.test/", "loopback"),
        ("http://mapped.example.test/", "private"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://nowhere.example.test/", "has no address"),
    ],
)
def test_internal_targets_are_refused_naming_the_allow_list(url: str, why: str) -> None:
    with pytest.raises(BadWebhookUrl, match=why) as caught:
        check_url(url, AllowList.parse([]), resolver)
    if why != "has no address":
        assert "CREWBOARD_WEBHOOK_ALLOW" in str(caught.value)


def test_public_and_allow_listed_targets_pass() -> None:
    none = AllowList.parse([])
    assert check_url(" https://hooks.example.test/in ", none, resolver) == (
        "https://hooks.example.test/in"
    )
    allow = AllowList.parse(["127.0.0.1", "inside.example.test"])
    assert str(vet_url("http://127.0.0.1:9/hook", allow, resolver)) == "127.0.0.1"
    assert str(vet_url("http://inside.example.test/", allow, resolver)) == "10.1.2.3"
    with pytest.raises(BadWebhookUrl, match="private"):
        vet_url("http://10.9.9.9/", allow, resolver)


def test_the_retry_schedule_doubles_with_jitter_up_to_its_cap() -> None:
    policy = RetryPolicy(base_s=5, cap_s=3600, give_up_s=86400, jitter=0.25)
    middle = [retry_delay_s(n, policy, 0.5) for n in range(1, 14)]
    assert middle[:6] == [5, 10, 20, 40, 80, 160]
    assert middle[-3:] == [3600, 3600, 3600]
    assert retry_delay_s(1, policy, 0.0) == pytest.approx(3.75)
    assert retry_delay_s(1, policy, 0.999999) == pytest.approx(6.25, abs=1e-4)
    assert retry_delay_s(10_000, policy, 0.5) == 3600
    assert retry_delay_s(0, policy, 0.5) == 0
