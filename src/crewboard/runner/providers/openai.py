"""The OpenAI Chat Completions wire protocol over httpx, streamed: used for
OpenAI, LM Studio and every ``[providers.NAME]`` endpoint.

Owns the HTTP side only: the request, server-sent events (``data:`` lines,
``[DONE]``), retries of 429/5xx/connection failures with exponential backoff
that honours ``Retry-After`` (bounded), timeouts suited to model calls, and
turning a provider's refusal into a :class:`ProviderError` whose message is the
provider's own, with the API key scrubbed out. Retries happen only before the
first chunk: a stream that fails midway is an error, never a replay.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Callable, Generator, Iterator
from typing import Any

import httpx

from crewboard.runner.providers import ProviderError

CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 120.0  # between two chunks: a slow model thinking is normal
MAX_ATTEMPTS = 4
BACKOFF_BASE_S = 1.0
MAX_WAIT_S = 30.0
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def retry_after_s(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def backoff_s(attempt: int, retry_after: float | None) -> float:
    """How long to wait before attempt ``attempt + 1``: the server's word if it
    gave one, else exponential; never more than ``MAX_WAIT_S``."""
    wait = retry_after if retry_after is not None else BACKOFF_BASE_S * 2 ** (attempt - 1)
    return min(wait, MAX_WAIT_S)


class OpenAITransport:
    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        provider: str = "openai",
        max_attempts: int = MAX_ATTEMPTS,
        sleep: Callable[[float], None] = time.sleep,
        timeout: httpx.Timeout | None = None,
    ) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.provider = provider
        self._api_key = api_key
        self._max_attempts = max_attempts
        self._sleep = sleep
        headers = {"Accept": "text/event-stream"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.Client(
            headers=headers,
            timeout=timeout
            or httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S, write=30.0, pool=10.0),
            trust_env=False,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> OpenAITransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    def stream(self, request: dict[str, Any]) -> Iterator[dict[str, Any]]:
        attempt = 0
        while True:
            attempt += 1
            try:
                wait, failure = yield from self._attempt(request, attempt)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError) as exc:
                # Nothing was streamed yet (mid-stream failures are raised as
                # ProviderError by _events), so trying again is safe.
                wait, failure = (
                    backoff_s(attempt, None),
                    f"cannot reach the model ({_describe(exc)})",
                )
            except httpx.TransportError as exc:
                raise ProviderError(self._scrub(f"{self.provider}: {_describe(exc)}")) from exc
            if failure is None:
                return
            if attempt >= self._max_attempts or wait is None:
                raise ProviderError(self._scrub(f"{self.provider}: {failure}"))
            self._sleep(wait)

    def _attempt(
        self, request: dict[str, Any], attempt: int
    ) -> Generator[dict[str, Any], None, tuple[float | None, str | None]]:
        """One request. Returns ``(wait_s, failure)``: ``(None, None)`` after a
        complete stream, a wait for a retryable failure, ``wait=None`` for a
        final one."""
        with self._client.stream("POST", self.url, json=request) as response:
            if response.status_code != 200:
                response.read()
                failure = f"HTTP {response.status_code}: {_error_text(response)}"
                if response.status_code in RETRY_STATUSES:
                    after = retry_after_s(response.headers.get("retry-after"))
                    return backoff_s(attempt, after), failure
                return None, failure
            yield from self._events(response)
            return None, None

    def _events(self, response: httpx.Response) -> Iterator[dict[str, Any]]:
        try:
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue  # blank separators, ": keep-alive" comments, event:/id: fields
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                try:
                    chunk = json.loads(data)
                except ValueError as exc:
                    raise ProviderError(
                        self._scrub(
                            f"{self.provider}: malformed chunk in the stream: {data[:200]!r}"
                        )
                    ) from exc
                yield chunk
        except httpx.ReadTimeout as exc:
            raise ProviderError(
                f"{self.provider}: no data from the model for {READ_TIMEOUT_S:.0f} s"
            ) from exc
        except httpx.TransportError as exc:
            raise ProviderError(
                self._scrub(f"{self.provider}: the stream was cut off ({_describe(exc)})")
            ) from exc


def _describe(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def _error_text(response: httpx.Response) -> str:
    """The provider's own words: ``error.message`` from an OpenAI-style error
    body, else the start of the body, else the reason phrase."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
        if isinstance(error, str):
            return error
        if isinstance(body.get("message"), str):
            return body["message"]
    text = response.text.strip()
    return text[:500] if text else response.reason_phrase
