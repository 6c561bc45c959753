"""The OpenAI Chat Completions wire protocol over httpx: used for OpenAI, LM
Studio and every ``[providers.NAME]`` endpoint.

Owns the HTTP side only: the request, server-sent events (``data:`` lines,
``[DONE]``, and the ``error:`` lines llama.cpp's server sends), retries with
exponential backoff that honours ``Retry-After`` (bounded), timeouts suited to
model calls, and turning a provider's refusal into a :class:`ProviderError`
whose message is the provider's own, without the API key or server paths.

Retries happen only before the first chunk: a stream that fails midway is an
error, never a replay here. 429, 502, 503, 504 (and 408) and connection
failures are retried; a 500 is retried once, and not at all when it reads as
a refusal of the request's shape (a validation error would only come back).

Servers that cannot stream an automatic tool choice (llama-cpp-python's
``chatml-function-calling`` answers "Automatic streaming tool choice is not
supported") get that step as one non-streamed request, turned back into
chunks. The refusal is remembered for the provider: in this process, and for
the host's other runners in a file of the provider's state folder.
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import httpx

from crewboard.runner.providers import ProviderError, StreamInterrupted

CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 120.0  # between two chunks: a slow model thinking is normal
# A non-streamed answer sends nothing until it is whole.
WHOLE_ANSWER_TIMEOUT_S = 600.0
MAX_ATTEMPTS = 4
BACKOFF_BASE_S = 1.0
MAX_WAIT_S = 30.0
RETRY_STATUSES = frozenset({408, 429, 502, 503, 504})
# A 500 is as often our request's shape as the server's bad moment: one retry.
RETRY_ONCE_STATUSES = frozenset({500})
REFUSED_STREAMING_FILE = "streamed-tool-choice-refused"

_REQUEST_SHAPE = re.compile(
    r"validation error|input should be|not supported|unsupported|invalid|expected", re.I
)
# Providers known, in this process, to refuse a streamed automatic tool choice.
_REFUSING_PROVIDERS: set[str] = set()


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


def refuses_streamed_tools(message: str) -> bool:
    """Whether a server's error says it cannot stream tool calls."""
    text = message.lower()
    return (
        "stream" in text
        and ("tool" in text or "function" in text)
        and any(s in text for s in ("not supported", "unsupported", "not implemented"))
    )


def _auto_tools(request: dict[str, Any]) -> bool:
    return bool(request.get("tools")) and request.get("tool_choice", "auto") == "auto"


class _StreamingRefused(ProviderError):
    """The server would not stream this request's automatic tool choice.
    ``certain`` when it said so; otherwise the stream broke before its first
    chunk, which is how some servers refuse."""

    def __init__(self, message: str, *, certain: bool) -> None:
        super().__init__(message)
        self.certain = certain


class OpenAITransport:
    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        provider: str = "openai",
        state_dir: Path | None = None,
        max_attempts: int = MAX_ATTEMPTS,
        sleep: Callable[[float], None] = time.sleep,
        timeout: httpx.Timeout | None = None,
    ) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.provider = provider
        self._api_key = api_key
        self._state_dir = state_dir
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
        self._whole_timeout = timeout or httpx.Timeout(
            WHOLE_ANSWER_TIMEOUT_S, connect=CONNECT_TIMEOUT_S, write=30.0, pool=10.0
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> OpenAITransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    @property
    def refuses_streamed_tools(self) -> bool:
        """Whether this provider is known to refuse streamed automatic tool choice."""
        if self.provider in _REFUSING_PROVIDERS:
            return True
        if self._state_dir is not None and (self._state_dir / REFUSED_STREAMING_FILE).exists():
            _REFUSING_PROVIDERS.add(self.provider)
            return True
        return False

    def _remember_refusal(self) -> None:
        _REFUSING_PROVIDERS.add(self.provider)
        if self._state_dir is None:
            return
        try:
            self._state_dir.mkdir(parents=True, exist_ok=True)
            (self._state_dir / REFUSED_STREAMING_FILE).write_text(
                "This model server refused a streamed automatic tool choice; "
                "crewboard asks it for whole answers when it sends tools.\n"
            )
        except OSError:
            pass  # remembered in this process; the next runner learns it again

    def stream(self, request: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The answer's chunks: streamed, or, for a server that cannot stream
        an automatic tool choice, one whole answer turned into chunks."""
        if request.get("stream") and _auto_tools(request) and self.refuses_streamed_tools:
            yield from self._whole(request)
            return
        try:
            yield from self._retrying(request)
        except _StreamingRefused as refused:
            try:
                yield from self._whole(request)
            except ProviderError:
                if refused.certain:
                    self._remember_refusal()
                raise
            self._remember_refusal()

    def _whole(self, request: dict[str, Any]) -> Iterator[dict[str, Any]]:
        whole = {k: v for k, v in request.items() if k != "stream_options"}
        whole["stream"] = False
        yield from self._retrying(whole)

    def _retrying(self, request: dict[str, Any]) -> Iterator[dict[str, Any]]:
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
            except httpx.ReadTimeout as exc:
                timeout = self._client.timeout if request.get("stream") else self._whole_timeout
                limit = timeout.read
                raise ProviderError(
                    f"{self.provider}: no answer from the model within {limit or 0:.0f} s"
                ) from exc
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
        complete answer, a wait for a retryable failure, ``wait=None`` for a
        final one."""
        streamed = bool(request.get("stream"))
        options: dict[str, Any] = {} if streamed else {"timeout": self._whole_timeout}
        headers = None if streamed else {"Accept": "application/json"}
        with self._client.stream(
            "POST", self.url, json=request, headers=headers, **options
        ) as response:
            if response.status_code != 200:
                response.read()
                text = _error_text(response)
                failure = f"HTTP {response.status_code}: {text}"
                if streamed and _auto_tools(request) and refuses_streamed_tools(text):
                    raise _StreamingRefused(self._scrub(failure), certain=True)
                status = response.status_code
                once = status in RETRY_ONCE_STATUSES and not _REQUEST_SHAPE.search(text)
                if status in RETRY_STATUSES or (once and attempt < 2):
                    after = retry_after_s(response.headers.get("retry-after"))
                    return backoff_s(attempt, after), failure
                return None, failure
            if streamed:
                yield from self._events(response, _auto_tools(request))
            else:
                response.read()
                yield from self._answer_chunks(response)
            return None, None

    def _events(self, response: httpx.Response, auto_tools: bool) -> Iterator[dict[str, Any]]:
        sent = 0
        finished = False
        event = ""
        try:
            for line in response.iter_lines():
                field, _, value = line.partition(":")
                value = value.strip()
                if field == "event":
                    event = value
                    continue
                if field not in ("data", "error"):
                    continue  # blank separators, ": keep-alive" comments, id: fields
                if field == "data" and value == "[DONE]":
                    if not finished:
                        raise StreamInterrupted(
                            f"{self.provider}: the model server interrupted the answer "
                            "(its stream ended without a finish reason)"
                        )
                    return
                try:
                    chunk = json.loads(value)
                except ValueError as exc:
                    raise ProviderError(
                        self._scrub(
                            f"{self.provider}: malformed chunk in the stream: {value[:200]!r}"
                        )
                    ) from exc
                error = _stream_error(field, event, chunk)
                event = ""
                if error is not None:
                    failure = self._scrub(f"{self.provider}: the model reported an error: {error}")
                    if auto_tools and not sent and refuses_streamed_tools(error):
                        raise _StreamingRefused(failure, certain=True)
                    raise ProviderError(failure)
                if _has_finish_reason(chunk):
                    finished = True
                sent += 1
                yield chunk
        except httpx.ReadTimeout as exc:
            raise ProviderError(
                f"{self.provider}: no data from the model for {READ_TIMEOUT_S:.0f} s"
            ) from exc
        except httpx.TransportError as exc:
            failure = self._scrub(f"{self.provider}: the stream was cut off ({_describe(exc)})")
            if auto_tools and not sent:
                raise _StreamingRefused(failure, certain=False) from exc
            raise ProviderError(failure) from exc
        if auto_tools and not sent:
            raise _StreamingRefused(
                f"{self.provider}: the stream ended before its first chunk", certain=False
            )

    def _answer_chunks(self, response: httpx.Response) -> Iterator[dict[str, Any]]:
        """A non-streamed ``chat.completion`` as the chunks a stream of it
        would have sent, so one assembler serves both."""
        try:
            body = response.json()
            choice = body["choices"][0]
            message = choice["message"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ProviderError(
                self._scrub(f"{self.provider}: malformed answer: {response.text[:200]!r}")
            ) from exc
        if not isinstance(message, dict):
            raise ProviderError(f"{self.provider}: malformed answer: the message is not an object")
        calls = message.get("tool_calls") or []
        if not isinstance(calls, list):
            raise ProviderError(f"{self.provider}: malformed answer: tool_calls is not a list")
        delta: dict[str, Any] = {"role": "assistant", "content": message.get("content") or ""}
        if calls:
            delta["tool_calls"] = [
                {**call, "index": i} for i, call in enumerate(calls) if isinstance(call, dict)
            ]
        finish = choice.get("finish_reason") or ("tool_calls" if calls else "stop")
        yield {
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        if isinstance(body.get("usage"), dict):
            yield {"object": "chat.completion.chunk", "choices": [], "usage": body["usage"]}


def _stream_error(field: str, event: str, chunk: Any) -> str | None:
    """The error a stream line carries, if it is one: an ``error:`` field
    (llama.cpp), an ``event: error``, or a data object with an ``error``."""
    if field == "error" or event == "error":
        inner = chunk.get("error", chunk) if isinstance(chunk, dict) else chunk
        return _error_message(inner)
    if isinstance(chunk, dict) and chunk.get("error") is not None:
        return _error_message(chunk["error"])
    return None


def _has_finish_reason(chunk: Any) -> bool:
    if not isinstance(chunk, dict) or not isinstance(chunk.get("choices"), list):
        return False
    return any(isinstance(c, dict) and c.get("finish_reason") for c in chunk["choices"])


def _error_message(error: Any) -> str:
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"]
    return str(error)


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
        if isinstance(body.get("detail"), str):
            return body["detail"]
    text = response.text.strip()
    return text[:500] if text else response.reason_phrase
