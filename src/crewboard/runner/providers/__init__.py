"""Model transports for the runner. Every provider speaks in OpenAI Chat
Completions chunk dicts, so the loop and :mod:`crewboard.runner.stream` are the
same whatever answers; only the transport differs:

- ``offline`` — :mod:`.offline`, the deterministic built-in model (no network);
- everything else — :mod:`.openai`, the OpenAI wire protocol over httpx
  (OpenAI itself, LM Studio, and ``[providers.NAME]`` endpoints).

Transports are imported lazily so the offline path never imports httpx.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from crewboard.runner.spec import ModelDef

# What a user sees of a provider's failure: enough to act on, never a wall of
# server traceback.
MAX_MESSAGE_CHARS = 300
# Absolute filesystem paths of the model server (its tracebacks and validation
# errors name its own files). URLs are left alone: the lookbehind refuses a
# slash that follows a scheme, a host or another slash.
_UNIX_PATH = re.compile(r"(?<![\w.:/~-])/(?:[\w.@+-]+/)+[\w.@+-]*")
_WINDOWS_PATH = re.compile(r"\b[A-Za-z]:\\[^\s\"',;]+")


def public_message(text: str) -> str:
    """``text`` fit to show a user: server paths replaced, whitespace runs
    folded to one space, cut at ``MAX_MESSAGE_CHARS``."""
    text = _WINDOWS_PATH.sub("<path>", _UNIX_PATH.sub("<path>", text))
    text = " ".join(text.split())
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 1].rstrip() + "…"
    return text


class ProviderError(Exception):
    """The model provider failed (refused, errored, cut the stream off or sent
    garbage). The message is fit for the run's ``error`` record: trimmed, with
    no server paths (see :func:`public_message`); the transport scrubs the API
    key before raising."""

    def __init__(self, message: str) -> None:
        super().__init__(public_message(message))


class StreamInterrupted(ProviderError):
    """The server ended the stream (``data: [DONE]``) before the answer had a
    finish reason: it dropped this request for another (llama-cpp-python does
    when a second request arrives). The server's doing; asking again is safe."""


class Transport(Protocol):
    def stream(self, request: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Send one Chat Completions request and yield its chunks."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def open_transport(model: ModelDef) -> Transport:
    if model.provider == "offline":
        from crewboard.runner.providers.offline import OfflineTransport

        return OfflineTransport()
    if not model.base_url:
        raise ProviderError(f"no base URL for the {model.provider!r} provider in the run's spec")
    from crewboard.runner.providers.openai import OpenAITransport

    return OpenAITransport(
        model.base_url, model.api_key, provider=model.provider, state_dir=model.state_dir
    )
