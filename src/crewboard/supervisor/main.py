"""``crewboard supervisor``: the actor that owns the run state of jobs.

``run_supervisor`` reads top to bottom: boot, start the heartbeat in a
nursery, tell systemd it is ready, wait for a signal, then stop.
"""

from __future__ import annotations

import logging
import signal

import trio

from crewboard.board import db, heartbeats
from crewboard.bootstrap import open_home
from crewboard.config import Config
from crewboard.supervisor.heartbeat import Identity, serve_heartbeat
from crewboard.systemd import Notifier

log = logging.getLogger(__name__)


async def run_supervisor(config: Config, *, stop: trio.Event | None = None) -> None:
    # Boot.
    await trio.to_thread.run_sync(open_home, config)
    identity = Identity()
    notifier = Notifier()
    stop = stop if stop is not None else trio.Event()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_set_on_signal, signals, stop)
            # Start the heartbeat.
            await nursery.start(
                serve_heartbeat,
                identity,
                config.heartbeat_s,
                lambda: (0, config.concurrency, 0),
                notifier,
            )
            notifier.notify(READY=1, STATUS="supervising")
            log.info("supervisor %s ready", identity.supervisor_id)
            # Wait for a signal.
            await stop.wait()
            notifier.notify(STOPPING=1)
            nursery.cancel_scope.cancel()
    # Stopped: say so, so status turns "down" at once.
    with trio.CancelScope(shield=True):
        await db.call(heartbeats.mark_stopped, identity.supervisor_id)
    log.info("supervisor %s stopped", identity.supervisor_id)


async def _set_on_signal(signals, stop: trio.Event) -> None:
    async for _ in signals:
        stop.set()
        return
