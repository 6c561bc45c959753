"""``crewboard web``: the web app served by Hypercorn's trio worker until
SIGINT/SIGTERM, then a graceful stop (open streams end within a few seconds)."""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import signal
from collections.abc import Iterator
from functools import partial

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from crewboard import metrics
from crewboard.bootstrap import ensure_first_admin, open_home, report_shell_sandbox
from crewboard.config import Config
from crewboard.home import Home
from crewboard.systemd import Notifier
from crewboard.web.app import create_app
from crewboard.web.edge import SERVER_HEAD_LIMIT_BYTES

log = logging.getLogger(__name__)

GRACEFUL_S = 1.5


def hypercorn_config(config: Config) -> HypercornConfig:
    hc = HypercornConfig()
    host = f"[{config.host}]" if ":" in config.host else config.host
    hc.bind = [f"{host}:{config.port}"]
    hc.accesslog = None  # crewboard logs each request itself, as JSON
    hc.errorlog = logging.getLogger("hypercorn.error")
    hc.graceful_timeout = GRACEFUL_S
    hc.include_server_header = False
    # Let every plausible head reach the app's own limits (web/edge.py), which
    # answer 414/431 in JSON; Hypercorn's own answer past these is bare.
    hc.h11_max_incomplete_size = SERVER_HEAD_LIMIT_BYTES
    hc.h2_max_header_list_size = SERVER_HEAD_LIMIT_BYTES
    return hc


async def serve_web(
    config: Config,
    *,
    shutdown: trio.Event | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until ``shutdown`` is set (or a signal arrives when none is given).
    Reports the bound URLs through ``task_status``."""
    home = await trio.to_thread.run_sync(open_home, config)
    await trio.to_thread.run_sync(report_shell_sandbox, config)
    if config.metrics:
        metrics.enable(home.run_dir)
    await trio.to_thread.run_sync(ensure_first_admin, config)
    app = create_app(config, home)
    notifier = Notifier()
    stop = shutdown if shutdown is not None else trio.Event()
    try:
        with _settled_garbage_collector():
            async with trio.open_nursery() as nursery:
                if shutdown is None:
                    nursery.start_soon(_stop_on_signal, stop, notifier)
                binds = await nursery.start(
                    partial(serve, app, hypercorn_config(config), shutdown_trigger=stop.wait)
                )
                _write_url_file(home, binds)
                notifier.notify(READY=1, STATUS=f"serving {binds[0]}")
                log.info("crewboard web serving on %s", ", ".join(binds))
                task_status.started(binds)
                await stop.wait()
                notifier.notify(STOPPING=1)
                nursery.cancel_scope.deadline = trio.current_time() + GRACEFUL_S + 1.0
    finally:
        # Stopped or cancelled: the app's inotify instance goes back now.
        app.extensions["crewboard"].catalog.close()


@contextlib.contextmanager
def _settled_garbage_collector() -> Iterator[None]:
    """Move everything imported at start out of the collector's way and make
    full collections rarer: with many open streams, the default thresholds
    stall every stream for hundreds of milliseconds a few times a second
    (bench/sse_fanout.py). Undone on the way out, so a process that served
    and goes on (an embedding one, or tests) gets its garbage collected."""
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def _write_url_file(home: Home, binds: list[str]) -> None:
    """Leave the bound URL in the home, for `crewboard serve` to print."""
    url = binds[0].replace("://0.0.0.0:", "://127.0.0.1:") + "/"
    tmp = home.run_dir / "web.json.tmp"
    tmp.write_text(json.dumps({"url": url, "pid": os.getpid()}))
    tmp.replace(home.run_dir / "web.json")


async def _stop_on_signal(stop: trio.Event, notifier: Notifier) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            stop.set()
            return
