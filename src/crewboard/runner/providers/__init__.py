"""Model transports for the runner. Every provider speaks in OpenAI Chat
Completions chunk dicts, so the loop and :mod:`crewboard.runner.stream` are the
same whatever answers; only the transport differs:

- ``offline`` — :mod:`.offline`, the deterministic built-in model (no network);
- everything else — :mod:`.openai`, the OpenAI wire protocol over httpx
  (OpenAI itself, LM Studio, and ``[providers.NAME]`` endpoints).

Transports are imported lazily so the offline path never imports httpx.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from crewboard.runner.spec import ModelDef


class ProviderError(Exception):
    """The model provider failed (refused, errored, cut the stream off or sent
    garbage). The message is fit for the run's ``error`` record: it never holds
    the API key."""


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

    return OpenAITransport(model.base_url, model.api_key, provider=model.provider)
