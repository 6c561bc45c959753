"""Configuration: command-line flag > environment > ``crewboard.toml`` in the home
(keys named as the environment variables) > built-in default.

Secrets live here only as values; ``Config.__repr__`` never prints them. A
secret variable (the provider keys, the Google client secret, the database URL,
the first administrator's password) may also come from a file: ``NAME_FILE``,
or ``$CREDENTIALS_DIRECTORY/name`` (systemd's ``LoadCredential=``). A server
process reads them once and then takes them out of its environment
(:func:`take_secret_env`) and makes itself non-dumpable
(:func:`crewboard.nodump.make_non_dumpable`), so a tool cannot find them in
``/proc/<pid>/environ``.

Also here: how the shell tool runs on this host (:func:`probe_shell_sandbox`),
found once per process and handed to every runner in its limits
(:meth:`Config.runner_limits`).
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from crewboard import limits
from crewboard.errors import ConfigError
from crewboard.home import locate_home
from crewboard.mcpspec import McpError, McpServer, parse_tables, variable_names
from crewboard.runspec import Limits


@dataclass(frozen=True)
class ProviderEndpoint:
    """A named OpenAI-compatible endpoint from ``[providers.NAME]`` in the toml.

    ``max_tokens`` caps each answer unless the agent preset sets its own;
    ``max_concurrency`` is how many requests the host's runners send it at
    once (None: the default for its kind, 0: no limit); ``text_tool_calls``
    turns tool calls the model wrote as text into real ones."""

    name: str
    base_url: str
    api_key_env: str | None = None
    max_tokens: int | None = None
    max_concurrency: int | None = None
    text_tool_calls: bool = False
    # The key as read at start (the variable is gone from the environment by
    # the time a run needs it).
    loaded_key: str | None = field(default=None, repr=False, compare=False)

    @property
    def api_key(self) -> str | None:
        if self.loaded_key is not None or not self.api_key_env:
            return self.loaded_key
        return os.environ.get(self.api_key_env)


def _secret() -> Any:
    return field(default=None, repr=False)


@dataclass(frozen=True)
class Config:
    home: Path = Path(".crewboard")
    host: str = "127.0.0.1"
    port: int = 8000
    base_url: str | None = None
    concurrency: int = 4
    # The most running jobs one user may have at once (fair share); None: no cap.
    user_concurrency: int | None = None
    workflows: tuple[Path, ...] = ()
    agents: tuple[Path, ...] = ()
    admin_email: str | None = None
    admin_password: str | None = _secret()
    allow_shell: bool = False
    # Only with this may the shell run when bubblewrap cannot.
    allow_unsandboxed_shell: bool = False
    # Commands of the shell share the host's network.
    shell_network: bool = False
    http_allow: tuple[str, ...] = ()
    openai_api_key: str | None = _secret()
    openai_base_url: str = "https://api.openai.com/v1"
    lmstudio_base_url: str = "http://127.0.0.1:1234/v1"
    # The optional local model (crewboard.localmodel): smollm2 or a GGUF path.
    local_model: str | None = None
    local_model_port: int = 8091
    google_client_id: str | None = None
    google_client_secret: str | None = _secret()
    google_allowed_domains: tuple[str, ...] = ()
    google_discovery_url: str = "https://accounts.google.com/.well-known/openid-configuration"
    database_url: str | None = _secret()
    # PostgreSQL: the longest one statement may run (0: no limit) and the
    # connections one process may hold at once.
    database_statement_timeout_s: float = 30.0
    database_pool_size: int = 10
    # A key file every web node shares (None: the home's own secret_key).
    secret_key_file: Path | None = None
    providers: Mapping[str, ProviderEndpoint] = field(default_factory=dict)
    # MCP tool servers ([mcp.NAME] in the toml) and the variables they read.
    mcp: Mapping[str, McpServer] = field(default_factory=dict)
    mcp_variables: tuple[str, ...] = ()
    # Password hashing (argon2id). Tests lower these to hash cheaply.
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    # Timings of the supervisor; tests shorten them.
    heartbeat_s: float = 2.0
    # How long a run's lease lasts without a renewal (CREWBOARD_LEASE_S);
    # 0: the default, max(15, 5 × heartbeat_s). See run_lease_s.
    lease_s: float = 0.0
    poll_s: float = 1.0
    drain_s: float = 10.0
    grace_s: float = 5.0
    # What one run may write: each text (a step's, the final result) and the
    # whole log; past the first the rest goes to an artifact, past the second
    # the run fails.
    max_result_bytes: int = 1 << 20
    max_log_bytes: int = 64 << 20
    # On a PostgreSQL board, the largest saved file a run's end copies into
    # the board for every web node (board/artifacts.py); a larger one stays
    # only in its host's home, and the job says so.
    artifact_max_bytes: int = 64 << 20
    # Web limits.
    max_body_bytes: int = 1 << 20
    login_attempts: int = 5
    login_window_s: float = 60.0
    # Per-user limits (crewboard.limits says how each is checked); 0: none.
    chat_turns_per_user: int = int(limits.CHAT_TURNS.default)
    chat_turn_timeout_s: float = limits.CHAT_TURN_SECONDS.default
    schedules_per_user: int = int(limits.SCHEDULES.default)
    queued_jobs_per_user: int = int(limits.QUEUED_JOBS.default)
    sessions_per_user: int = int(limits.SESSIONS.default)
    # GET /readyz answers 503 when the home's file system has less free space.
    min_free_mb: int = 512
    # Retention (supervisor/retention.py): finished jobs, chats and events
    # older than this many days are pruned; None keeps everything. The
    # per-status settings override it for done, blocked and archived jobs,
    # and the chat one for chat sessions untouched that long.
    retention_days: float | None = None
    retention_days_done: float | None = None
    retention_days_blocked: float | None = None
    retention_days_archived: float | None = None
    retention_days_chat: float | None = None
    # How often the pruner looks for what has aged out; tests shorten it.
    retention_every_s: float = 600.0
    # Webhooks (supervisor/webhooks.py): hosts or networks a webhook may
    # reach though they are internal (CREWBOARD_WEBHOOK_ALLOW, as the HTTP
    # tool's CREWBOARD_HTTP_ALLOW); how long one attempt may take; the first
    # retry's delay (doubling up to the cap) and when to give up. Tests
    # shorten them.
    webhook_allow: tuple[str, ...] = ()
    webhook_timeout_s: float = 10.0
    webhook_retry_s: float = 5.0
    webhook_retry_cap_s: float = 3600.0
    webhook_give_up_s: float = 86400.0
    # GET /metrics (Prometheus, for administrators' tokens); off: a 404.
    metrics: bool = False

    def __post_init__(self) -> None:
        for name in ("max_result_bytes", "max_log_bytes"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{_env_name(name)}: must be a positive number of bytes")
        if self.database_pool_size < 1:
            raise ConfigError(f"{_env_name('database_pool_size')}: must be at least 1")

    @property
    def google_enabled(self) -> bool:
        return bool(self.google_client_id and self.google_client_secret)

    @property
    def secure_cookies(self) -> bool:
        return bool(self.base_url) and urlsplit(self.base_url or "").scheme == "https"

    def shell_sandbox(self) -> ShellSandbox:
        """How the shell can be sandboxed here (probed once per process)."""
        if not self.allow_shell:
            return ShellSandbox(None, None)
        return probe_shell_sandbox(os.environ.get("PATH", os.defpath))

    @property
    def run_lease_s(self) -> float:
        """How long a supervisor holds a run without renewing its lease
        (board/leases.py): ``lease_s`` if set, else max(15, 5 × heartbeat_s),
        several heartbeats, so a missed beat or two costs no run."""
        return self.lease_s if self.lease_s > 0 else max(15.0, 5 * self.heartbeat_s)

    def runner_limits(self) -> Limits:
        """The limits every runner of this server gets, with how its shell
        may run here."""
        sandbox = self.shell_sandbox()
        unsandboxed = sandbox.problem is not None and self.allow_unsandboxed_shell
        return Limits(
            allow_shell=self.allow_shell,
            http_allow=tuple(self.http_allow),
            shell_sandbox="none" if unsandboxed else "bwrap",
            shell_bwrap=sandbox.bwrap,
            shell_unavailable=None if unsandboxed else sandbox.problem,
            shell_network=self.shell_network,
            max_result_bytes=self.max_result_bytes,
            max_log_bytes=self.max_log_bytes,
        )

    @property
    def origin(self) -> str | None:
        """The scheme://host[:port] of the base URL, if one is configured."""
        if not self.base_url:
            return None
        parts = urlsplit(self.base_url)
        return f"{parts.scheme}://{parts.netloc}".lower()

    @classmethod
    def load(
        cls,
        home: str | os.PathLike[str] | None = None,
        flags: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Config:
        """Resolve the configuration. ``flags`` are command-line values by field
        name (None means not given); the home is found as a server finds it
        (:func:`crewboard.home.locate_home`; the other commands pass the home
        they found)."""
        environ = os.environ if environ is None else environ
        flags = {k: v for k, v in (flags or {}).items() if v is not None}
        home_path = locate_home(home, environ, use_record=False).path
        toml = _read_toml(home_path / "crewboard.toml")
        values: dict[str, Any] = {"home": home_path.resolve()}
        for f in fields(cls):
            if f.name in ("home", "providers", "mcp", "mcp_variables"):
                continue
            key = _env_name(f.name)
            raw: Any = None
            if f.name in flags:
                raw = flags[f.name]
            elif key in environ:
                raw = environ[key]
            elif key in SECRET_ENV and (from_file := read_secret_file(key, environ)):
                raw = from_file
            elif key in toml:
                raw = toml[key]
            if raw is None:
                continue
            try:
                values[f.name] = _coerce(f.type, raw)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{key}: {exc}") from exc
        values["providers"] = _providers(toml.get("providers", {}), environ)
        try:
            values["mcp"] = parse_tables(
                toml.get("mcp", {}), environ, str(values["home"]), read_secret_file
            )
        except McpError as exc:
            raise ConfigError(f"crewboard.toml: {exc}") from exc
        values["mcp_variables"] = variable_names(toml.get("mcp", {}))
        return cls(**values)

    def secret_env_names(self) -> tuple[str, ...]:
        """The variables that hold this configuration's secrets."""
        keys = (p.api_key_env for p in self.providers.values() if p.api_key_env)
        return (*SECRET_ENV, *keys, *self.mcp_variables)


# Variables whose values are secrets: read once, never left in a server's
# environment.
SECRET_ENV = (
    "OPENAI_API_KEY",
    "GOOGLE_CLIENT_SECRET",
    "CREWBOARD_DATABASE_URL",
    "CREWBOARD_ADMIN_PASSWORD",
)


def read_secret_file(name: str, environ: Mapping[str, str]) -> str | None:
    """A secret kept in a file rather than the environment: the file named
    by ``NAME_FILE``, else ``$CREDENTIALS_DIRECTORY/name`` (lower case), as
    systemd's ``LoadCredential=`` places it. Trailing newlines are dropped."""
    path = environ.get(name + "_FILE")
    if not path and environ.get("CREDENTIALS_DIRECTORY"):
        path = os.path.join(environ["CREDENTIALS_DIRECTORY"], name.lower())
        if not os.path.exists(path):
            return None
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().rstrip("\r\n") or None
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read {path}: {exc.strerror}") from exc


# The shortest shared secret key accepted: as long as the key a home makes.
MIN_SECRET_KEY_BYTES = 32


def read_secret_key_file(path: Path) -> bytes:
    """The key in ``path`` (``CREWBOARD_SECRET_KEY_FILE``), shared by every
    web node so that each accepts the cookies and signed values of the
    others. Refused unless it is a file that other users cannot read and
    holds at least :data:`MIN_SECRET_KEY_BYTES` (surrounding whitespace
    dropped)."""
    name = _env_name("secret_key_file")
    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            key = f.read().strip()
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read {path}: {exc.strerror}") from exc
    if mode & 0o004:
        raise ConfigError(
            f"{name}: {path} is readable by every user of this machine; "
            f"restrict it (chmod 600 {path}) before using it as the secret key"
        )
    if len(key) < MIN_SECRET_KEY_BYTES:
        raise ConfigError(
            f"{name}: {path} holds {len(key)} bytes; a secret key needs at least "
            f"{MIN_SECRET_KEY_BYTES} (make one with: openssl rand -base64 48)"
        )
    return key


def take_secret_env(config: Config) -> dict[str, str]:
    """Remove the secret variables from this process's environment (its
    children inherit ``os.environ``); returns what was removed. The process's
    initial environment in ``/proc/<pid>/environ`` is not changed by this:
    :func:`crewboard.nodump.make_non_dumpable` closes that."""
    taken = {}
    for name in config.secret_env_names():
        value = os.environ.pop(name, None)
        if value is not None:
            taken[name] = value
    return taken


@dataclass(frozen=True)
class ShellSandbox:
    """How this host can sandbox the shell: ``bwrap`` is the bubblewrap
    binary; ``problem`` says why it cannot be used (None: it works)."""

    bwrap: str | None
    problem: str | None


# The namespaces and mounts the shell's sandbox (the runner's
# ``tools/sandbox.py``) needs, tried once.
_PROBE_ARGS = shlex.split(
    "--unshare-all --unshare-user --disable-userns --die-with-parent --new-session "
    "--cap-drop ALL --ro-bind / / --proc /proc --dev /dev --tmpfs /tmp -- /bin/true"
)


@functools.cache
def probe_shell_sandbox(path: str | None = None) -> ShellSandbox:
    """Find ``bwrap`` on ``path`` (default ``$PATH``) and check, once per
    process, that it can create the shell's namespaces here."""
    bwrap = shutil.which("bwrap", path=path)
    if bwrap is None:
        return ShellSandbox(None, "bwrap is not installed (Debian: apt install bubblewrap)")
    try:
        done = subprocess.run(
            [bwrap, *_PROBE_ARGS],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=10,
            env={"PATH": "/usr/bin:/bin"},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return ShellSandbox(bwrap, f"{bwrap} cannot be run: {exc}")
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip() or f"exit status {done.returncode}"
        return ShellSandbox(bwrap, f"{bwrap} cannot create the sandbox's namespaces: {said}")
    return ShellSandbox(bwrap, None)


# Field name -> variable name, where the variable is not CREWBOARD_<FIELD>.
_ENV_NAMES = {
    "openai_api_key": "OPENAI_API_KEY",
    "openai_base_url": "OPENAI_BASE_URL",
    "lmstudio_base_url": "LMSTUDIO_BASE_URL",
    "google_client_id": "GOOGLE_CLIENT_ID",
    "google_client_secret": "GOOGLE_CLIENT_SECRET",
    "google_allowed_domains": "GOOGLE_ALLOWED_DOMAINS",
    "google_discovery_url": "GOOGLE_DISCOVERY_URL",
}


def _env_name(name: str) -> str:
    return _ENV_NAMES.get(name, "CREWBOARD_" + name.upper())


def _coerce(type_: Any, raw: Any) -> Any:
    t = str(type_)
    if t.startswith("tuple[Path"):
        parts = raw if isinstance(raw, list) else str(raw).split(":")
        return tuple(Path(p).expanduser() for p in parts if p)
    if t.startswith("tuple[str"):
        parts = raw if isinstance(raw, list) else str(raw).replace(",", " ").split()
        return tuple(str(p).strip().lower() for p in parts if str(p).strip())
    if t == "bool":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"expected a boolean, got {raw!r}")
    if t == "int | None" and str(raw).strip() in ("", "0"):
        return None
    if t in ("int", "int | None"):
        value = int(raw)
        if value < 0:
            raise ValueError("must not be negative")
        return value
    if t in ("float", "float | None"):
        if t == "float | None" and str(raw).strip() == "":
            return None
        number = float(raw)
        if number < 0 or number != number:
            raise ValueError("must not be negative")
        return number
    if t == "Path | None":
        text = str(raw).strip()
        return Path(text).expanduser() if text else None
    if t in ("str | None", "str"):
        return str(raw) or None if t == "str | None" else str(raw)
    raise TypeError(f"unsupported setting type {t}")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def _providers(table: Any, environ: Mapping[str, str]) -> dict[str, ProviderEndpoint]:
    if not isinstance(table, dict):
        raise ConfigError("crewboard.toml: [providers] must be a table of tables")
    result = {}
    for name, entry in table.items():
        if name in ("openai", "lmstudio", "offline", "local"):
            raise ConfigError(f"crewboard.toml: [providers.{name}] shadows a built-in provider")
        if not isinstance(entry, dict) or not isinstance(entry.get("base_url"), str):
            raise ConfigError(f'crewboard.toml: [providers.{name}] needs base_url = "..."')
        text_tool_calls = entry.get("text_tool_calls", False)
        if not isinstance(text_tool_calls, bool):
            raise ConfigError(
                f"crewboard.toml: [providers.{name}] text_tool_calls must be true or false"
            )
        key_env = entry.get("api_key_env")
        key = (environ.get(key_env) or read_secret_file(key_env, environ)) if key_env else None
        result[name] = ProviderEndpoint(
            name,
            entry["base_url"].rstrip("/"),
            key_env,
            max_tokens=_count(entry, name, "max_tokens", minimum=1),
            max_concurrency=_count(entry, name, "max_concurrency", minimum=0),
            text_tool_calls=text_tool_calls,
            loaded_key=key,
        )
    return result


def _count(entry: dict[str, Any], name: str, key: str, *, minimum: int) -> int | None:
    value = entry.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(
            f"crewboard.toml: [providers.{name}] {key} must be an integer of at least {minimum}"
        )
    return value
