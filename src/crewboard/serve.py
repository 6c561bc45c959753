"""``crewboard serve``: the one-command start. Runs ``crewboard web`` and
``crewboard supervisor`` as child processes, plus ``crewboard local-model
serve`` when ``CREWBOARD_LOCAL_MODEL`` is set; prints the URL, restarts a
child that dies unexpectedly (with backoff, saying why), and on Ctrl-C or
SIGTERM stops them all within 5 s.

The children start without the secret variables in their environment (their
``/proc/<pid>/environ`` would show them for as long as they run): `serve` hands
them over on a pipe instead (:func:`receive_secrets`). The first
administrator's password stays here: `serve` makes that account before either
child starts."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import trio

from crewboard import localmodel, logs, metrics
from crewboard.bootstrap import ensure_first_admin, open_home
from crewboard.config import Config
from crewboard.processes import describe_exit

log = logging.getLogger("crewboard.serve")

STOP_WITHIN_S = 4.5
# A supervisor still draining this long before the deadline is hurried.
HURRY_BEFORE_S = 1.5
STABLE_AFTER_S = 60.0
MAX_BACKOFF_S = 30.0
URL_FILE = "web.json"


LIFELINE_ENV = "CREWBOARD_LIFELINE_FD"
SECRETS_ENV = "CREWBOARD_SECRETS_FD"
# Secrets a child needs, by variable name; the others stay with `serve`.
_NOT_HANDED = ("CREWBOARD_ADMIN_PASSWORD",)


def receive_secrets() -> dict[str, str]:
    """In a child of `crewboard serve`: the secret variables it was handed
    on a pipe, as ``{name: value}`` ({} when not started by `serve`)."""
    fd_text = os.environ.pop(SECRETS_ENV, None)
    if not fd_text:
        return {}
    with os.fdopen(int(fd_text), "rb") as pipe:
        handed = json.loads(pipe.read() or b"{}")
    return {str(k): str(v) for k, v in handed.items()} if isinstance(handed, dict) else {}


def _secrets_pipe(secrets: Mapping[str, str]) -> int:
    """The read end of a pipe holding ``secrets`` as JSON, written and closed."""
    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "wb") as pipe:
        pipe.write(json.dumps(dict(secrets)).encode())  # a few hundred bytes: fits the pipe
    return read_end


def follow_lifeline() -> None:
    """In a child of `crewboard serve`: stop (as on SIGTERM) once the parent is
    gone, even if it was killed outright. The parent holds the only write end
    of a pipe whose read end the child inherits; its death closes the pipe."""
    fd_text = os.environ.pop(LIFELINE_ENV, None)
    if not fd_text:
        return
    fd = int(fd_text)

    def wait_for_eof() -> None:
        while os.read(fd, 1):
            pass
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=wait_for_eof, name="lifeline", daemon=True).start()


@dataclass
class Child:
    name: str
    argv: list[str]
    process: trio.Process | None = None


async def _supervise_child(
    child: Child, stopping: trio.Event, lifeline: int, secrets: Mapping[str, str]
) -> None:
    backoff_s = 1.0
    while not stopping.is_set():
        started = trio.current_time()
        handed = _secrets_pipe(secrets)
        try:
            child.process = await trio.lowlevel.open_process(
                child.argv,
                stdin=subprocess.DEVNULL,
                # Their own process group: a Ctrl-C at the terminal reaches serve
                # alone, which stops the children in order (and gives jobs a drain).
                process_group=0,
                pass_fds=(lifeline, handed),
                env={**os.environ, LIFELINE_ENV: str(lifeline), SECRETS_ENV: str(handed)},
            )
        finally:
            os.close(handed)
        code = await child.process.wait()
        if stopping.is_set():
            return
        if trio.current_time() - started > STABLE_AFTER_S:
            backoff_s = 1.0
        log.warning(
            "%s %s unexpectedly; restarting in %.0f s", child.name, describe_exit(code), backoff_s
        )
        with trio.move_on_after(backoff_s):
            await stopping.wait()
        backoff_s = min(backoff_s * 2, MAX_BACKOFF_S)


async def _announce_url(url_file: Path) -> None:
    """Print the URL once the web process has written it (it picks the port),
    however long its start takes: on a busy machine that can be more than
    half a minute, and a start that never says where it runs looks hung."""
    while (url := await trio.to_thread.run_sync(_read_url, url_file)) is None:
        await trio.sleep(0.05)
    if logs.log_format() == "json":
        log.info("crewboard is running at %s  (Ctrl-C to stop)", url)
    else:
        print(f"crewboard is running at {url}  (Ctrl-C to stop)", flush=True)


def _read_url(url_file: Path) -> str | None:
    try:
        with open(url_file) as f:
            return str(json.load(f)["url"])
    except (FileNotFoundError, ValueError, KeyError):
        return None


async def _stop_children(children: list[Child]) -> None:
    """SIGTERM them all; a second SIGTERM near the deadline tells the supervisor to
    cut its drain short (its runs end interrupted and are requeued); SIGKILL
    whatever still runs at the deadline."""
    running = [c for c in children if c.process is not None and c.process.returncode is None]
    for child in running:
        child.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]

    async def wait_all() -> None:
        for child in running:
            await child.process.wait()  # type: ignore[union-attr]

    with trio.move_on_after(STOP_WITHIN_S - HURRY_BEFORE_S):
        await wait_all()
    for child in running:
        if child.process.returncode is None:  # type: ignore[union-attr]
            child.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    with trio.move_on_after(HURRY_BEFORE_S):
        await wait_all()
    for child in running:
        if child.process.returncode is None:  # type: ignore[union-attr]
            log.warning("%s did not stop in time; killing it", child.name)
            child.process.kill()  # type: ignore[union-attr]
            await child.process.wait()  # type: ignore[union-attr]


async def run_serve(config: Config, secrets: Mapping[str, str] | None = None) -> int:
    """Run both children until a signal; ``secrets`` are the secret
    variables this process took out of its environment, for the children."""
    handed = {k: v for k, v in (secrets or {}).items() if k not in _NOT_HANDED}
    # A local model that is asked for but cannot run stops the start here,
    # with the fix, rather than in a child restarted forever.
    local = await trio.to_thread.run_sync(localmodel.check_usable, config)
    opened = await trio.to_thread.run_sync(open_home, config)
    await trio.to_thread.run_sync(ensure_first_admin, config)
    url_file = config.home / "run" / URL_FILE
    if config.metrics:
        # Counters start from zero with the server (crewboard.metrics).
        await trio.to_thread.run_sync(metrics.clear, opened.run_dir)
    await trio.to_thread.run_sync(partial(url_file.unlink, missing_ok=True))
    base = [sys.executable, "-m", "crewboard"]
    home = ["--home", str(config.home)]
    children = [
        Child("web", [*base, "web", *home, "--host", config.host, "--port", str(config.port)]),
        Child("supervisor", [*base, "supervisor", *home]),
    ]
    if local is not None:
        children.append(Child("local model", [*base, "local-model", "serve", *home]))
        log.info(
            "local model %s:%s at %s", localmodel.PROVIDER, local.name, localmodel.base_url(config)
        )
    stopping = trio.Event()
    lifeline, _keep_open = os.pipe()  # the write end lives exactly as long as we do
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            for child in children:
                nursery.start_soon(_supervise_child, child, stopping, lifeline, handed)
            nursery.start_soon(_announce_url, url_file)
            async for signum in signals:
                log.info("%s received; stopping", signal.Signals(signum).name)
                break
            stopping.set()
            with trio.CancelScope(shield=True):
                await _stop_children(children)
            nursery.cancel_scope.cancel()
    return 0
