"""Sign-in through the live server under attack: limits taken before the
hash, a stranger who cannot lock the owner out, login CSRF refused, and
sign-out by POST.

Client addresses are real: Linux routes all of 127.0.0.0/8 to loopback, so a
client bound to 127.0.0.2 reaches the server from another address."""

from __future__ import annotations

import httpx
import trio

from tests.conftest import PASSWORD, client_for

WRONG = "not the password at all"


def _credentials(account) -> dict[str, str]:
    return {"email": account.email, "password": PASSWORD}


def client_from(base_url: str, address: str, **kwargs: object) -> httpx.AsyncClient:
    """A same-origin client whose connections come from ``address``."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    return client_for(base_url, transport=transport, **kwargs)


async def _burst(client: httpx.AsyncClient, email: str, password: str, n: int) -> list[int]:
    statuses: list[int] = []

    async def one() -> None:
        response = await client.post("/auth/login", json={"email": email, "password": password})
        statuses.append(response.status_code)

    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(one)
    return statuses


async def test_a_parallel_burst_gets_only_the_limit_checked(server, alice, config):
    limits = httpx.Limits(max_connections=40)
    async with client_from(server, "127.0.0.1", limits=limits) as stranger:
        statuses = await _burst(stranger, alice.email, WRONG, 40)
    # A 401 is a password that was hashed and checked; a 429 never reached the hash.
    assert statuses.count(401) == config.login_attempts, sorted(statuses)
    assert statuses.count(429) == 40 - config.login_attempts
    async with client_from(server, "127.0.0.1") as same_place:
        again = await same_place.post(
            "/auth/login", json={"email": alice.email, "password": PASSWORD}
        )
        assert again.status_code == 429
        assert int(again.headers["retry-after"]) >= 1


async def test_a_strangers_failures_never_lock_the_owner_out(server, alice, bob, config):
    async with client_from(server, "127.0.0.1") as stranger:
        statuses = await _burst(stranger, alice.email, WRONG, 40)
        assert 429 in statuses
        # The stranger's address is limited whoever it guesses next.
        others = await _burst(stranger, bob.email, WRONG, 40)
        assert others.count(401) + statuses.count(401) <= 4 * config.login_attempts
    async with client_from(server, "127.0.0.2") as owner:
        response = await owner.post("/auth/login", json=_credentials(alice))
        assert response.status_code == 200, response.text
        assert (await owner.get("/auth/me")).json()["id"] == alice.id


async def test_many_strangers_slow_the_account_but_the_owner_gets_in(server, alice, config):
    # More addresses than the account's own limit allows attempts: each
    # address stays under its limits, the account does not.
    addresses = [f"127.0.1.{n}" for n in range(1, 4 * config.login_attempts + 6)]
    statuses: list[int] = []

    async def guess_from(address: str) -> None:
        async with client_from(server, address) as stranger:
            for _ in range(2):
                response = await stranger.post(
                    "/auth/login", json={"email": alice.email, "password": WRONG}
                )
                statuses.append(response.status_code)

    async with trio.open_nursery() as nursery:
        for address in addresses:
            nursery.start_soon(guess_from, address)
    refused = statuses.count(429)
    # Past the account's limit, an address that has already failed is refused.
    assert refused > 0
    async with client_from(server, "127.0.0.2") as owner:
        response = await owner.post("/auth/login", json=_credentials(alice))
        assert response.status_code == 200, response.text


async def test_a_cross_site_form_cannot_sign_a_browser_in(server, alice):
    form = {"email": alice.email, "password": PASSWORD}
    async with httpx.AsyncClient(base_url=server, timeout=30) as client:
        refused = [
            # A form on another site: the browser names that site.
            await client.post("/auth/login", data=form, headers={"Origin": "http://evil.example"}),
            # A page that hides its origin sends "null".
            await client.post("/auth/login", data=form, headers={"Origin": "null"}),
            await client.post(
                "/auth/login", data=form, headers={"Referer": "http://evil.example/page"}
            ),
            # A form with neither header (an old browser, a stripped Referer).
            await client.post("/auth/login", data=form),
            # enctype="text/plain" smuggling a JSON body.
            await client.post(
                "/auth/login",
                content=f'{{"email": "{alice.email}", "password": "{PASSWORD}", "x": "="}}',
                headers={"Content-Type": "text/plain"},
            ),
        ]
        for response in refused:
            assert response.status_code == 403, response.text
            assert response.json()["error"]["code"] == "forbidden"
            assert "crewboard_session" not in response.headers.get("set-cookie", "")
        assert (await client.get("/auth/me")).json() is None
        # A JSON client that is no browser (no Origin) signs in as before.
        api = await client.post("/auth/login", json=form)
        assert api.status_code == 200
    async with client_for(server) as page:
        assert (await page.post("/auth/login", data=form)).status_code == 200
    async with httpx.AsyncClient(base_url=server, timeout=30) as client:
        same_site = await client.post(
            "/auth/login", data=form, headers={"Referer": f"{server}/login?next=/board"}
        )
        assert same_site.status_code == 200


async def test_post_logout_ends_the_session(server, alice):
    async with client_for(server) as client:
        await client.post("/auth/login", json={"email": alice.email, "password": PASSWORD})
        cookie = client.cookies.get("crewboard_session")
        # Another site cannot sign the user out: the cookie's origin check.
        forged = await client.post("/auth/logout", headers={"Origin": "http://evil.example"})
        assert forged.status_code == 403
        assert (await client.get("/auth/me")).json()["id"] == alice.id
        response = await client.post("/auth/logout")
        assert response.status_code == 204 and response.content == b""
        assert "crewboard_session=" in response.headers["set-cookie"]
        assert (await client.get("/auth/me")).json() is None
    async with client_for(server, cookies={"crewboard_session": cookie}) as replay:
        assert (await replay.get("/auth/me")).json() is None
