"""``crewboard supervisor``: the actor that owns the run state of jobs.

``run_supervisor`` reads top to bottom: boot (open the home, bind the wake
socket), recover the runs of supervisors that died, start the runner template
and the heartbeat, take work (wake socket and, on PostgreSQL, wake-ups from
every host, reaper, dispatcher, scheduler, pruner and webhook sender in one
nursery), tell systemd it is ready, wait for a signal, then stop taking work
and drain the running runs.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import AsyncIterator, Callable
from functools import partial

import trio

from crewboard import metrics
from crewboard.board import db, heartbeats
from crewboard.board.sweep import serve_sweeps
from crewboard.bootstrap import open_home, report_shell_sandbox
from crewboard.config import Config
from crewboard.forkserver import ForkServer
from crewboard.supervisor.dispatcher import Dispatcher, serve_dispatcher
from crewboard.supervisor.heartbeat import Identity, Leases, serve_fence, serve_heartbeat
from crewboard.supervisor.launcher import Launcher, open_launcher
from crewboard.supervisor.reaper import run_recovery, serve_reaper
from crewboard.supervisor.retention import serve_pruner
from crewboard.supervisor.scheduler import serve_scheduler
from crewboard.supervisor.wake import (
    Wakeup,
    open_wake_socket,
    serve_wake_notifications,
    serve_wake_socket,
)
from crewboard.supervisor.webhooks import Sender, serve_webhooks
from crewboard.systemd import Notifier
from crewboard.wakeup import JOBS, SCHEDULES, WEBHOOKS

log = logging.getLogger(__name__)


async def run_supervisor(
    config: Config,
    *,
    stop: trio.Event | None = None,
    forkserver: bool = True,
    task_status: trio.TaskStatus[Identity] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Supervise job runs until SIGTERM/SIGINT (or ``stop`` is set), then
    drain. ``task_status`` gets this supervisor's identity once it is ready.
    Runners are forked from a pre-imported template unless ``forkserver`` is
    False (then each is a fresh interpreter)."""
    # Boot.
    home = await trio.to_thread.run_sync(open_home, config)
    await trio.to_thread.run_sync(report_shell_sandbox, config)
    if config.metrics:
        metrics.enable(home.run_dir)
    identity = Identity()
    notifier = Notifier()
    wakeup = Wakeup()  # the dispatcher's: new work, finished runs
    schedule_wakeup = Wakeup()  # the scheduler's: schedules changed
    webhook_wakeup = Wakeup()  # the webhook sender's: jobs settled

    def settled() -> None:
        """Runs were recovered: slots are free, and a webhook may be due."""
        wakeup.set()
        webhook_wakeup.set()

    stop = stop if stop is not None else trio.Event()
    hurry = trio.Event()  # a second signal: stop the running runs now
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_wake_socket(home.wake_socket) as wake_socket:
            # Recover the runs that dead supervisors left behind.
            await run_recovery(identity)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_set_on_signal, signals, stop, hurry)
                # Start the runner template; it outlives the drain.
                template = ForkServer() if forkserver else None
                if template is not None:
                    await nursery.start(template.serve)
                # A run's end frees a slot; only an end that queued webhook
                # deliveries wakes the sender.
                async with open_launcher(
                    config, home, wakeup.set, template, webhook_wakeup.set
                ) as launcher:
                    dispatcher = Dispatcher(
                        identity.supervisor_id,
                        home,
                        launcher,
                        config.poll_s,
                        config.user_concurrency,
                    )
                    # Start the heartbeat, renewing the runs' leases, and the
                    # fence that stops the runners if it cannot; both go on
                    # through the drain.
                    leases = Leases(config.run_lease_s, launcher)
                    await nursery.start(
                        serve_heartbeat,
                        identity,
                        config.heartbeat_s,
                        _load(config, launcher, dispatcher),
                        notifier,
                        leases,
                    )
                    await nursery.start(serve_fence, leases)
                    # Take work.
                    async with trio.open_nursery() as intake:
                        woken = {JOBS: wakeup, SCHEDULES: schedule_wakeup, WEBHOOKS: webhook_wakeup}
                        await intake.start(serve_wake_socket, wake_socket, woken)
                        await intake.start(serve_wake_notifications, woken)
                        await intake.start(
                            serve_reaper,
                            identity,
                            config.heartbeat_s,
                            settled,
                            launcher.active.keys,
                        )
                        await intake.start(serve_dispatcher, dispatcher, wakeup)
                        await intake.start(
                            partial(serve_scheduler, on_spawned=wakeup.set),
                            config,
                            schedule_wakeup,
                        )
                        await intake.start(serve_pruner, config, home)
                        await intake.start(serve_sweeps, home, config.retention_every_s)
                        await intake.start(
                            serve_webhooks, Sender(identity.supervisor_id, config), webhook_wakeup
                        )
                        notifier.notify(READY=1, STATUS=f"ready: 0/{config.concurrency} running")
                        log.info("supervisor %s ready", identity.supervisor_id)
                        task_status.started(identity)
                        # Wait for a signal.
                        await stop.wait()
                        notifier.notify(STOPPING=1, STATUS="stopping: draining running jobs")
                        log.info("supervisor %s stopping", identity.supervisor_id)
                        intake.cancel_scope.cancel()
                    # Drain: let running runs finish within drain_s, then interrupt them.
                    await launcher.drain(config.drain_s, hurry)
                nursery.cancel_scope.cancel()
    # Stopped: say so, so status turns "down" at once.
    with trio.CancelScope(shield=True):
        try:
            await db.call(heartbeats.mark_stopped, identity.supervisor_id)
        except Exception as exc:
            if not db.is_transient_error(exc):
                raise
            # The heartbeat goes stale instead: status turns "down" a little later.
            log.warning("could not mark supervisor %s stopped: %s", identity.supervisor_id, exc)
    notifier.close()
    log.info("supervisor %s stopped", identity.supervisor_id)


def _load(
    config: Config, launcher: Launcher, dispatcher: Dispatcher
) -> Callable[[], tuple[int, int, int]]:
    """(running, capacity, ready) for the heartbeat row and systemd's STATUS."""
    return lambda: (launcher.running, config.concurrency, dispatcher.outlook.ready)


async def _set_on_signal(signals: AsyncIterator[int], stop: trio.Event, hurry: trio.Event) -> None:
    """The first SIGTERM/SIGINT stops the supervisor (with a drain); a second
    one cuts the drain short."""
    async for _ in signals:
        if stop.is_set():
            log.info("second signal: stopping the running jobs now")
            hurry.set()
            return
        stop.set()
