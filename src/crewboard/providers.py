"""Model providers as the server sees them: parsing a model spec
(``provider:model``), resolving it into the ``model`` part of a runner's spec,
and listing the models a user can pick (``GET /api/models``). Neutral ground
for the web process and the supervisor; the runner's side of providers (the
streaming transports) is :mod:`crewboard.runner.providers`.

Providers: ``openai`` (needs ``OPENAI_API_KEY``), ``lmstudio`` (at
``LMSTUDIO_BASE_URL``), ``offline`` (built in, always there) and every
``[providers.NAME]`` endpoint of ``crewboard.toml``. An API key leaves this
module only inside a runner's spec, which travels on the runner's stdin.

Besides where to send requests, a resolved model carries how: ``maxTokens``
(the provider's cap; a preset's own wins in the runner), ``maxConcurrency``
(requests at once from all the host's runners: 1 for LM Studio and any
endpoint on loopback unless its table says otherwise, no limit for OpenAI and
remote endpoints), ``stateDir`` (where the runners share the provider's slots)
and ``textToolCalls``.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import urlsplit

from crewboard import localmodel
from crewboard.errors import ValidationFailed
from crewboard.home import Home

if TYPE_CHECKING:
    import httpx

    from crewboard.config import Config

log = logging.getLogger(__name__)

DEFAULT_MODEL = "offline:scripted"
OFFLINE_MODELS = (
    {
        "id": "offline:scripted",
        "provider": "offline",
        "name": "Offline scripted model (built in, no network, not an LLM)",
    },
)
# Shown when an OpenAI key is set: current, widely available chat models with tool calls.
OPENAI_MODELS = ("gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "gpt-4o", "gpt-4o-mini")
BUILTIN = ("openai", "lmstudio", "offline", "local")
LIST_TIMEOUT_S = 1.5
CACHE_TTL_S = 30.0
# One model on one machine answers one request well, and several badly: some
# servers queue the others silently, some abandon the running answer.
LOCAL_MAX_CONCURRENCY = 1

# Models as ``GET /api/models`` lists them: ``{"id", "provider", "name"}`` each.
ModelList: TypeAlias = list[dict[str, str]]


def parse_model_spec(spec: str) -> tuple[str, str]:
    """``"openai:gpt-4o-mini"`` → ``("openai", "gpt-4o-mini")``. The model part
    may itself hold colons (``lmstudio:qwen:7b``)."""
    provider, sep, name = spec.partition(":") if isinstance(spec, str) else ("", "", "")
    if not sep or not provider or not name.strip():
        raise ValidationFailed(
            f"{spec!r} is not a model spec: use provider:model, e.g. {DEFAULT_MODEL}",
            {"modelSpec": "must be provider:model"},
        )
    return provider, name.strip()


def resolve_model(spec: str, config: Config) -> dict[str, Any]:
    """The ``model`` part of a runner's spec, base URL and key included.
    ValidationFailed for an unknown provider or a provider with no key."""
    provider, name = parse_model_spec(spec)
    model: dict[str, Any] = {
        "spec": f"{provider}:{name}",
        "provider": provider,
        "name": name,
        "baseUrl": None,
        "apiKey": None,
    }
    if provider == "offline":
        if name != "scripted":
            raise ValidationFailed(
                f"the offline provider has one model, {DEFAULT_MODEL}",
                {"modelSpec": "unknown offline model"},
            )
        return model
    model.update(
        maxTokens=None,
        maxConcurrency=None,
        stateDir=str(Home(config.home).provider_dir(provider)),
        textToolCalls=False,
    )
    if provider == "openai":
        if not config.openai_api_key:
            raise ValidationFailed(
                "openai models need OPENAI_API_KEY set on the server",
                {"modelSpec": "the openai provider has no API key"},
            )
        model.update(baseUrl=config.openai_base_url, apiKey=config.openai_api_key)
        return model
    if provider == "lmstudio":
        model.update(baseUrl=config.lmstudio_base_url, maxConcurrency=LOCAL_MAX_CONCURRENCY)
        return model
    if provider == localmodel.PROVIDER:  # the model server CREWBOARD_LOCAL_MODEL turns on
        model.update(localmodel.resolve_endpoint(name, config))
        return model
    endpoint = config.providers.get(provider)
    if endpoint is None:
        known = ", ".join([*BUILTIN, *config.providers])
        raise ValidationFailed(
            f"unknown model provider {provider!r} (known: {known})",
            {"modelSpec": f"unknown provider {provider!r}"},
        )
    key = endpoint.api_key
    if endpoint.api_key_env and not key:
        raise ValidationFailed(
            f"provider {provider!r} needs its key in ${endpoint.api_key_env}, which is not set",
            {"modelSpec": f"the {provider} provider has no API key"},
        )
    concurrency = endpoint.max_concurrency
    if concurrency is None:
        concurrency = LOCAL_MAX_CONCURRENCY if is_loopback(endpoint.base_url) else 0
    model.update(
        baseUrl=endpoint.base_url,
        apiKey=key,
        maxTokens=endpoint.max_tokens,
        maxConcurrency=concurrency or None,
        textToolCalls=endpoint.text_tool_calls,
    )
    return model


def is_loopback(base_url: str) -> bool:
    """Whether a base URL points at this machine."""
    host = (urlsplit(base_url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _endpoints(config: Config, *, warn: bool = False) -> list[tuple[str, str, str | None]]:
    """(provider, base URL, key) of every provider whose models are listed live."""
    found: list[tuple[str, str, str | None]] = [("lmstudio", config.lmstudio_base_url, None)]
    if config.local_model:
        found.append((localmodel.PROVIDER, localmodel.base_url(config), None))
    for name, endpoint in config.providers.items():
        if endpoint.api_key_env and not endpoint.api_key:
            if warn:
                log.warning(
                    "provider %s: $%s is not set; its models are not listed",
                    name,
                    endpoint.api_key_env,
                )
            continue
        found.append((name, endpoint.base_url, endpoint.api_key))
    return found


async def _fetch_models(
    client: httpx.AsyncClient, provider: str, base_url: str, key: str | None
) -> ModelList:
    """The models one endpoint reports at ``/models``, or none if it is down,
    slow or answers garbage (logged, never raised)."""
    import httpx

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    url = base_url.rstrip("/") + "/models"
    try:
        response = await client.get(url, headers=headers)
        response.raise_for_status()
        entries = response.json()["data"]
        ids = [e["id"] for e in entries if isinstance(e, dict) and isinstance(e.get("id"), str)]
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        reason = f"{type(exc).__name__}: {exc}"
        if key:
            reason = reason.replace(key, "***")
        log.warning("provider %s at %s left out of the model list: %s", provider, url, reason)
        return []
    return [{"id": f"{provider}:{i}", "provider": provider, "name": i} for i in ids]


class ModelCatalog:
    """The model list, cached for ``ttl_s`` per configuration; each endpoint
    gets ``timeout_s`` to answer. ``clock`` and ``transport`` are parameters
    so tests control time and the network."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        ttl_s: float = CACHE_TTL_S,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout_s: float = LIST_TIMEOUT_S,
    ) -> None:
        self.clock = clock
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self.transport = transport
        self._cache: dict[tuple[Any, ...], tuple[float, ModelList]] = {}

    async def list(self, config: Config) -> ModelList:
        key = (bool(config.openai_api_key), tuple(_endpoints(config)))
        cached = self._cache.get(key)
        if cached is not None and self.clock() < cached[0]:
            return [dict(m) for m in cached[1]]
        models = await self._collect(config)
        self._cache[key] = (self.clock() + self.ttl_s, models)
        return [dict(m) for m in models]

    async def _collect(self, config: Config) -> ModelList:
        import httpx
        import trio

        models: ModelList = []
        if config.openai_api_key:
            models += [
                {"id": f"openai:{m}", "provider": "openai", "name": m} for m in OPENAI_MODELS
            ]
        endpoints = _endpoints(config, warn=True)
        found: list[ModelList] = [[] for _ in endpoints]
        async with httpx.AsyncClient(
            timeout=self.timeout_s, transport=self.transport, trust_env=False
        ) as client:

            async def fetch(i: int, provider: str, base_url: str, key: str | None) -> None:
                with trio.move_on_after(self.timeout_s + 0.5) as scope:
                    found[i] = await _fetch_models(client, provider, base_url, key)
                if scope.cancelled_caught:
                    log.warning(
                        "provider %s at %s left out of the model list: too slow", provider, base_url
                    )

            async with trio.open_nursery() as nursery:
                for i, (provider, base_url, key) in enumerate(endpoints):
                    nursery.start_soon(fetch, i, provider, base_url, key)
        for group in found:
            models += group
        models += [dict(m) for m in OFFLINE_MODELS]
        return models


_default_catalog = ModelCatalog()


async def list_models(config: Config, catalog: ModelCatalog | None = None) -> ModelList:
    """``GET /api/models``: curated OpenAI models when a key is set, the models
    LM Studio and each configured endpoint report, and the offline model,
    always. Cached about 30 s; never raises for a provider that is down."""
    return await (catalog or _default_catalog).list(config)
