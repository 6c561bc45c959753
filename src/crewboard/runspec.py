"""The runner spec: what one runner is asked to do, as :class:`RunnerSpec`.
Neutral ground: the launcher (a job's run) and the chat turns (a chat's turn)
build one, :mod:`crewboard.processes` writes it as the first line of the
runner's stdin (:meth:`RunnerSpec.to_line`), and the runner reads it back
through :meth:`RunnerSpec.from_json`, which owns the validation and the
defaults of every optional key. It imports no layer, so the runner, the
supervisor and the web process all share it.

Wire shape (keys other than runId, agentId, agents, model, prompt and logPath
are optional)::

    {"runId": "42", "kind": "job" | "chat", "agentId": "triage",
     "agents": {"triage": {"id", "name", "description", "instructions",
                           "model", "tools", "handoffs", "maxTokens",
                           "mcp": [NAME], "mcpTools": ["NAME.tool"]}, ...},
     "mcp": {NAME: {...}},  (the MCP servers the agents name: crewboard.mcpspec)
     "model": {"spec": "offline:scripted", "provider": "offline",
               "name": "scripted", "baseUrl": null, "apiKey": null,
               "maxTokens": null, "maxConcurrency": null, "stateDir": null,
               "textToolCalls": false},
     "messages": [{"role": "user" | "assistant", "content": "..."}],
     "prompt": "...", "workspace": "/abs/dir", "logPath": "/abs/file.jsonl",
     "artifactDir": "/abs/dir", "artifact": "brief.md" | null,
     "limits": {"maxSteps": 25, "toolTimeoutS": 60, "toolOutputBytes": 65536,
                "httpMaxBytes": 1048576, "httpTimeoutS": 15,
                "maxResultBytes": 1048576, "maxLogBytes": 67108864,
                "allowShell": false, "httpAllow": [],
                "shellSandbox": "bwrap" | "none", "shellBwrap": "/usr/bin/bwrap",
                "shellUnavailable": null, "shellNetwork": false,
                "shellCpuS": 120, "shellMemoryBytes": 4294967296,
                "shellProcesses": 256, "shellFileBytes": 1073741824,
                "shellOpenFiles": 1024},
     "requestId": "9f2c…" | null,
     "lease": {"seconds": 15} | null,
     "shipAck": true | false}

``requestId`` is the HTTP request that started the run; the runner writes it
on the run's first and terminal records, so a run's log points back at the
request's log lines.

``lease`` is the length of a job run's lease. Its supervisor writes an empty
line to the runner's stdin each time it renews the lease; a runner that hears none
for most of a lease stops itself (``runner/lease.py``), exiting
:data:`LEASE_LAPSED_EXIT` after an ``error`` record, so a frozen or cut-off
supervisor cannot keep it running while a peer reruns its job.

``shipAck`` is true where the supervisor ships the run's records into the
board (PostgreSQL): after each shipment it writes the highest seq the board
holds to the runner's stdin, a number on a line. A job runner with
``shipAck`` writes its final result as a ``result_pending`` record first and
its ``final_result`` only once the board holds that record
(``runner/settle.py``), so a result the board never got is never final in
the log, and a peer that rescues the run reads the result from the board.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

# The most model calls one run or one chat turn may make before it ends with
# an error; a loop between agents or tools stops here.
MAX_STEPS = 25
# The most one text of a run (a step's streamed text, the final result) and
# its whole log may hold; past them the text is cut, the log ends the run.
MAX_RESULT_BYTES = 1 << 20
MAX_LOG_BYTES = 64 << 20


class SpecError(ValueError):
    """The launcher handed the runner a spec it cannot run (the launcher's fault)."""


class _Value:
    """A small frozen record with keyword construction, equality and a repr
    that leaves secrets out. Plain slotted classes rather than dataclasses:
    ``dataclasses`` imports ``inspect``, which would add a third to the
    runner's start-up time, and the runner reads its spec before anything else."""

    __slots__: tuple[str, ...] = ()
    # Fields left out of the constructor take these; any other field is required.
    _defaults: ClassVar[dict[str, Any]] = {}
    _hidden: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **values: Any) -> None:
        missing = [n for n in self.__slots__ if n not in values and n not in self._defaults]
        if missing:
            raise TypeError(f"{type(self).__name__} needs {', '.join(missing)}")
        for name in self.__slots__:
            object.__setattr__(self, name, values.pop(name, self._defaults.get(name)))
        if values:
            raise TypeError(f"unexpected fields: {', '.join(values)}")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen")

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and all(
            getattr(self, n) == getattr(other, n) for n in self.__slots__
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{n}={getattr(self, n)!r}" for n in self.__slots__ if n not in self._hidden
        )
        return f"{type(self).__name__}({shown})"


class Limits(_Value):
    """What a run may spend: model calls, tool time and output, HTTP, shell,
    and what it may write (each text, the whole log).

    The shell runs inside bubblewrap (``shell_sandbox`` "bwrap", at
    ``shell_bwrap`` or the ``bwrap`` the runner finds) and refuses to run
    without it, unless the operator allowed an unsandboxed shell ("none").
    ``shell_unavailable`` is the server's finding that the sandbox cannot
    work here; the shell then answers each call with it. The ``shell_*``
    numbers are hard resource limits on each command."""

    __slots__ = (
        "allow_shell",
        "http_allow",
        "http_max_bytes",
        "http_timeout_s",
        "max_log_bytes",
        "max_result_bytes",
        "max_steps",
        "shell_bwrap",
        "shell_cpu_s",
        "shell_file_bytes",
        "shell_memory_bytes",
        "shell_network",
        "shell_open_files",
        "shell_processes",
        "shell_sandbox",
        "shell_unavailable",
        "tool_output_bytes",
        "tool_timeout_s",
    )
    _defaults: ClassVar[dict[str, Any]] = {
        "max_steps": MAX_STEPS,
        "tool_timeout_s": 60.0,
        "tool_output_bytes": 65536,
        "http_max_bytes": 1 << 20,
        "http_timeout_s": 15.0,
        "max_result_bytes": MAX_RESULT_BYTES,
        "max_log_bytes": MAX_LOG_BYTES,
        "allow_shell": False,
        "http_allow": (),
        "shell_sandbox": "bwrap",
        "shell_bwrap": None,
        "shell_unavailable": None,
        "shell_network": False,
        "shell_cpu_s": 120,
        "shell_memory_bytes": 4 << 30,
        "shell_processes": 256,
        "shell_file_bytes": 1 << 30,
        "shell_open_files": 1024,
    }
    max_steps: int
    tool_timeout_s: float
    tool_output_bytes: int
    http_max_bytes: int
    http_timeout_s: float
    max_result_bytes: int
    max_log_bytes: int
    allow_shell: bool
    http_allow: tuple[str, ...]
    shell_sandbox: str
    shell_bwrap: str | None
    shell_unavailable: str | None
    shell_network: bool
    shell_cpu_s: int
    shell_memory_bytes: int
    shell_processes: int
    shell_file_bytes: int
    shell_open_files: int

    def to_json(self) -> dict[str, Any]:
        """The ``limits`` object. The tuning limits go out only when they
        differ from the defaults the runner would take anyway."""
        out: dict[str, Any] = {
            "maxSteps": self.max_steps,
            "allowShell": self.allow_shell,
            "httpAllow": list(self.http_allow),
        }
        for key, (attr, _) in _TUNING_KEYS.items():
            value = getattr(self, attr)
            if value != self._defaults[attr]:
                out[key] = value
        return out

    @classmethod
    def from_json(cls, value: Any) -> Limits:
        if not isinstance(value, dict):
            raise SpecError("limits: must be an object")
        kwargs: dict[str, Any] = {}
        for key, (attr, type_) in _LIMIT_KEYS.items():
            if value.get(key) is None:
                continue
            item = value[key]
            if type_ is bool:
                if not isinstance(item, bool):
                    raise SpecError(f"limits.{key}: must be true or false")
            elif type_ is str:
                if not isinstance(item, str) or not item:
                    raise SpecError(f"limits.{key}: must be a non-empty string or null")
            elif isinstance(item, bool) or not isinstance(item, int | float) or item <= 0:
                raise SpecError(f"limits.{key}: must be a positive number")
            kwargs[attr] = type_(item)
        if kwargs.get("shell_sandbox", "bwrap") not in SHELL_SANDBOXES:
            raise SpecError(f"limits.shellSandbox: must be one of {', '.join(SHELL_SANDBOXES)}")
        kwargs["http_allow"] = _str_list(value.get("httpAllow"), "limits.httpAllow")
        return cls(**kwargs)


# How the shell may run: inside bubblewrap, or (only when the operator says
# so) without any sandbox.
SHELL_SANDBOXES = ("bwrap", "none")

_TUNING_KEYS: dict[str, tuple[str, type]] = {
    "toolTimeoutS": ("tool_timeout_s", float),
    "toolOutputBytes": ("tool_output_bytes", int),
    "httpMaxBytes": ("http_max_bytes", int),
    "httpTimeoutS": ("http_timeout_s", float),
    "shellSandbox": ("shell_sandbox", str),
    "shellBwrap": ("shell_bwrap", str),
    "shellUnavailable": ("shell_unavailable", str),
    "shellNetwork": ("shell_network", bool),
    "shellCpuS": ("shell_cpu_s", int),
    "shellMemoryBytes": ("shell_memory_bytes", int),
    "shellProcesses": ("shell_processes", int),
    "shellFileBytes": ("shell_file_bytes", int),
    "shellOpenFiles": ("shell_open_files", int),
    "maxResultBytes": ("max_result_bytes", int),
    "maxLogBytes": ("max_log_bytes", int),
}
_LIMIT_KEYS: dict[str, tuple[str, type]] = {
    "maxSteps": ("max_steps", int),
    **_TUNING_KEYS,
    "allowShell": ("allow_shell", bool),
}


class AgentDef(_Value):
    """One preset as the runner sees it."""

    __slots__ = (
        "description",
        "handoffs",
        "id",
        "instructions",
        "max_tokens",
        "mcp",
        "mcp_tools",
        "model",
        "name",
        "tools",
    )
    _defaults: ClassVar[dict[str, Any]] = {
        "description": "",
        "max_tokens": None,
        "model": None,
        "tools": (),
        "handoffs": (),
        "mcp": (),
        "mcp_tools": (),
    }
    id: str
    name: str
    instructions: str
    description: str
    model: str | None
    tools: tuple[str, ...]
    handoffs: tuple[str, ...]
    max_tokens: int | None
    mcp: tuple[str, ...]
    mcp_tools: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "instructions": self.instructions,
            "model": self.model,
            "tools": list(self.tools),
            "handoffs": list(self.handoffs),
            "maxTokens": self.max_tokens,
        }
        if self.mcp:
            out.update(mcp=list(self.mcp), mcpTools=list(self.mcp_tools))
        return out


def agents_from_json(value: Any) -> dict[str, AgentDef]:
    """The ``agents`` object (presets by id) as :class:`AgentDef` values."""
    if not isinstance(value, dict) or not value:
        raise SpecError("agents: must be an object of presets by id")
    agents = {}
    for agent_id, entry in value.items():
        where = f"agents.{agent_id}"
        if not isinstance(entry, dict):
            raise SpecError(f"{where}: must be an object")
        instructions = entry.get("instructions", "")
        if not isinstance(instructions, str):
            raise SpecError(f"{where}.instructions: must be a string")
        name = entry.get("name") or agent_id
        if not isinstance(name, str):
            raise SpecError(f"{where}.name: must be a string")
        agents[agent_id] = AgentDef(
            id=agent_id,
            name=name,
            instructions=instructions,
            description=str(entry.get("description") or ""),
            model=entry.get("model") if isinstance(entry.get("model"), str) else None,
            tools=_str_list(entry.get("tools"), f"{where}.tools"),
            handoffs=_str_list(entry.get("handoffs"), f"{where}.handoffs"),
            max_tokens=_positive(entry, "maxTokens", where),
            mcp=_str_list(entry.get("mcp"), f"{where}.mcp"),
            mcp_tools=_str_list(entry.get("mcpTools"), f"{where}.mcpTools"),
        )
    return agents


def _positive(raw: dict[str, Any], key: str, where: str) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise SpecError(f"{where}.{key}: must be a positive integer or null")
    return value


class ModelDef(_Value):
    """The model a run calls, with its endpoint and key (never shown in a
    repr). ``max_concurrency`` None means no limit; ``state_dir`` is the
    provider's folder of slots and remembered quirks, shared by the host's
    runners."""

    __slots__ = (
        "api_key",
        "base_url",
        "max_concurrency",
        "max_tokens",
        "name",
        "provider",
        "spec",
        "state_dir",
        "text_tool_calls",
    )
    _defaults: ClassVar[dict[str, Any]] = {
        "base_url": None,
        "api_key": None,
        "max_tokens": None,
        "max_concurrency": None,
        "state_dir": None,
        "text_tool_calls": False,
    }
    _hidden = ("api_key",)
    spec: str
    provider: str
    name: str
    base_url: str | None
    api_key: str | None
    max_tokens: int | None
    max_concurrency: int | None
    state_dir: Path | None
    text_tool_calls: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "provider": self.provider,
            "name": self.name,
            "baseUrl": self.base_url,
            "apiKey": self.api_key,
            "maxTokens": self.max_tokens,
            "maxConcurrency": self.max_concurrency,
            "stateDir": str(self.state_dir) if self.state_dir else None,
            "textToolCalls": self.text_tool_calls,
        }

    @classmethod
    def from_json(cls, value: Any) -> ModelDef:
        if not isinstance(value, dict):
            raise SpecError("model: must be an object with spec, provider and name")
        for key in ("spec", "provider", "name"):
            if not isinstance(value.get(key), str) or not value[key]:
                raise SpecError(f"model.{key}: must be a non-empty string")
        for key in ("baseUrl", "apiKey"):
            if value.get(key) is not None and not isinstance(value[key], str):
                raise SpecError(f"model.{key}: must be a string or null")
        state_dir = value.get("stateDir")
        if state_dir is not None and (
            not isinstance(state_dir, str) or not os.path.isabs(state_dir)
        ):
            raise SpecError("model.stateDir: must be an absolute path or null")
        if not isinstance(value.get("textToolCalls", False), bool):
            raise SpecError("model.textToolCalls: must be true or false")
        return cls(
            spec=value["spec"],
            provider=value["provider"],
            name=value["name"],
            base_url=value.get("baseUrl"),
            api_key=value.get("apiKey") or None,
            max_tokens=_positive(value, "maxTokens", "model"),
            max_concurrency=_positive(value, "maxConcurrency", "model"),
            state_dir=Path(state_dir) if state_dir else None,
            text_tool_calls=value.get("textToolCalls", False),
        )


# The runner's exit code once it has stopped itself because its lease lapsed.
LEASE_LAPSED_EXIT = 75


class Lease(_Value):
    """A run's lease as its runner sees it: its length in seconds (each
    renewal arrives as an empty line on the runner's stdin)."""

    __slots__ = ("seconds",)
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"seconds": self.seconds}

    @classmethod
    def from_json(cls, raw: Any) -> Lease | None:
        if raw is None:
            return None
        if not isinstance(raw, dict):
            raise SpecError("lease: must be an object or null")
        seconds = raw.get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
            raise SpecError("lease.seconds: must be a positive number")
        return cls(seconds=float(seconds))


class RunnerSpec(_Value):
    """Everything one runner needs: who answers (``agents``, starting with
    ``agent_id``), on which model, to what (``prompt`` after ``messages``),
    where it writes, and its limits. ``kind`` is ``job`` or ``chat``."""

    __slots__ = (
        "agent_id",
        "agents",
        "artifact",
        "artifact_dir",
        "kind",
        "lease",
        "limits",
        "log_path",
        "mcp",
        "messages",
        "model",
        "prompt",
        "request_id",
        "run_id",
        "ship_ack",
        "workspace",
    )
    _defaults: ClassVar[dict[str, Any]] = {
        "kind": "job",
        "messages": (),
        "artifact": None,
        "limits": Limits(),
        "request_id": None,
        "mcp": {},
        "lease": None,
        "ship_ack": False,
    }
    run_id: str
    kind: str
    agent_id: str
    agents: dict[str, AgentDef]
    model: ModelDef
    prompt: str
    log_path: Path
    workspace: Path
    artifact_dir: Path
    messages: tuple[dict[str, str], ...]
    artifact: str | None
    limits: Limits
    # The HTTP request that started the run (crewboard.logs), if one did.
    request_id: str | None
    # MCP servers by name (crewboard.mcpspec.McpServer), only when an agent names one.
    mcp: dict[str, Any]
    # A job run's lease (see the module docstring); a chat turn has none.
    lease: Lease | None
    # Where the board's shipped seq is acknowledged (see the module docstring).
    ship_ack: bool

    def to_json(self) -> dict[str, Any]:
        """The spec as its JSON document (see the module docstring)."""
        out: dict[str, Any] = {
            "runId": self.run_id,
            "kind": self.kind,
            "agentId": self.agent_id,
            "agents": {agent_id: agent.to_json() for agent_id, agent in self.agents.items()},
            "model": self.model.to_json(),
            "messages": [dict(message) for message in self.messages],
            "prompt": self.prompt,
            "workspace": str(self.workspace),
            "logPath": str(self.log_path),
            "artifactDir": str(self.artifact_dir),
            "artifact": self.artifact,
            "limits": self.limits.to_json(),
            "requestId": self.request_id,
        }
        if self.mcp:
            out["mcp"] = {name: server.to_json() for name, server in self.mcp.items()}
        if self.lease is not None:
            out["lease"] = self.lease.to_json()
        if self.ship_ack:
            out["shipAck"] = True
        return out

    def to_line(self) -> bytes:
        """The spec as the runner reads it: one line of JSON."""
        return spec_line(self.to_json())

    @classmethod
    def from_json(cls, raw: Any) -> RunnerSpec:
        """Validate a decoded spec; a SpecError names the first bad key. A
        spec without a workspace or artifact folder gets scratch ones under
        ``$TMPDIR``."""
        if not isinstance(raw, dict):
            raise SpecError("the spec must be a JSON object")
        run_id = raw.get("runId")
        if isinstance(run_id, int) and not isinstance(run_id, bool):
            run_id = str(run_id)
        if not isinstance(run_id, str) or not run_id:
            raise SpecError("runId: must be a non-empty string")
        log_path = _abs_path(raw, "logPath", None)
        agents = agents_from_json(raw.get("agents"))
        agent_id = _text(raw, "agentId")
        if agent_id not in agents:
            raise SpecError(f"agentId: {agent_id!r} is not among the spec's agents")
        for agent in agents.values():
            for target in agent.handoffs:
                if target not in agents:
                    raise SpecError(
                        f"agents.{agent.id}.handoffs: {target!r} is not among the spec's agents"
                    )
        kind = raw.get("kind", "job")
        if kind not in ("job", "chat"):
            raise SpecError("kind: must be 'job' or 'chat'")
        safe_id = "".join(c if c.isalnum() or c in "-_" else "_" for c in run_id)[:64]
        scratch = Path(os.environ.get("TMPDIR") or "/tmp") / f"crewboard-run-{safe_id}"
        artifact = raw.get("artifact")
        if artifact is not None and (not isinstance(artifact, str) or not artifact):
            raise SpecError("artifact: must be a file name or null")
        request_id = raw.get("requestId")
        if request_id is not None and (not isinstance(request_id, str) or len(request_id) > 64):
            raise SpecError("requestId: must be a string of at most 64 characters or null")
        mcp = _mcp_servers(raw.get("mcp"))
        for agent in agents.values():
            for name in agent.mcp:
                if name not in mcp:
                    raise SpecError(f"agents.{agent.id}.mcp: {name!r} is not among the spec's mcp")
        return cls(
            run_id=run_id,
            kind=kind,
            agent_id=agent_id,
            agents=agents,
            model=ModelDef.from_json(raw.get("model")),
            prompt=_text(raw, "prompt", allow_empty=True),
            log_path=log_path,
            workspace=_abs_path(raw, "workspace", scratch / "workspace"),
            artifact_dir=_abs_path(raw, "artifactDir", scratch / "artifacts"),
            messages=_messages(raw.get("messages", [])),
            artifact=artifact,
            limits=Limits.from_json(raw.get("limits", {})),
            request_id=request_id or None,
            mcp=mcp,
            lease=Lease.from_json(raw.get("lease")),
            ship_ack=_flag(raw, "shipAck"),
        )


def _mcp_servers(value: Any) -> dict[str, Any]:
    """The spec's MCP servers; their module is imported only for a spec that
    has some, so a runner without MCP never loads it."""
    if value is None:
        return {}
    from crewboard.mcpspec import McpError, servers_from_json

    try:
        return dict(servers_from_json(value))
    except McpError as exc:
        raise SpecError(str(exc)) from exc


def spec_line(document: Mapping[str, Any]) -> bytes:
    """A spec's JSON document as the first line of a runner's stdin."""
    return json.dumps(document, separators=(",", ":")).encode() + b"\n"


def _text(
    raw: dict[str, Any], key: str, default: str | None = None, *, allow_empty: bool = False
) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str) or (not value and not allow_empty):
        raise SpecError(f"{key}: must be a non-empty string")
    return value


def _abs_path(raw: dict[str, Any], key: str, default: Path | None) -> Path:
    value = raw.get(key)
    if value is None and default is not None:
        return default
    if not isinstance(value, str) or not os.path.isabs(value):
        raise SpecError(f"{key}: must be an absolute path")
    return Path(value)


def _flag(raw: dict[str, Any], key: str) -> bool:
    value = raw.get(key, False)
    if not isinstance(value, bool):
        raise SpecError(f"{key}: must be true or false")
    return value


def _str_list(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SpecError(f"{where}: must be a list of strings")
    return tuple(value)


def _messages(value: Any) -> tuple[dict[str, str], ...]:
    if not isinstance(value, list):
        raise SpecError("messages: must be a list")
    messages = []
    for i, message in enumerate(value):
        if (
            not isinstance(message, dict)
            or message.get("role") not in ("user", "assistant")
            or not isinstance(message.get("content"), str)
        ):
            raise SpecError(f"messages[{i}]: must be {{role: user|assistant, content: string}}")
        messages.append({"role": message["role"], "content": message["content"]})
    return tuple(messages)
