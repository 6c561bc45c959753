"""``GET /healthz`` and ``GET /readyz``: what a load balancer, systemd or a
monitor asks, without credentials.

``/healthz`` answers whether this web process serves and can read the board,
within a second even when the board is locked or its disk hangs: the read
runs on a connection and a thread of its own (``board/health.py``), and is
abandoned after :data:`HEALTH_TIMEOUT_S`. ``/readyz`` adds whether any
supervisor is alive to run jobs (its heartbeat, as ``/api/dispatcher/status``
reads it) and whether the home has room left to write. Either answers 503,
in the one error shape, when something is wrong.

Both are logged at DEBUG only, so a probe every few seconds does not fill
the access log.
"""

from __future__ import annotations

import logging
import shutil
from typing import Any

import trio
from quart import Blueprint, g, jsonify

from crewboard import __version__
from crewboard.board import health, heartbeats, job_views
from crewboard.clock import utcnow
from crewboard.web.errors import error_body
from crewboard.web.state import state

log = logging.getLogger(__name__)

bp = Blueprint("health", __name__)

HEALTH_TIMEOUT_S = 1.0
READY_TIMEOUT_S = 2.0
# Probes do not wait for one another: a hung board ties up at most these.
_PROBE_THREADS = 2
_limiter: trio.lowlevel.RunVar[trio.CapacityLimiter] = trio.lowlevel.RunVar("health_limiter")


@bp.before_request
async def _quiet() -> None:
    g.access_log_level = logging.DEBUG


def _probe_limiter() -> trio.CapacityLimiter:
    try:
        return _limiter.get()
    except LookupError:
        limiter = trio.CapacityLimiter(_PROBE_THREADS)
        _limiter.set(limiter)
        return limiter


async def _board_reachable(timeout_s: float) -> str | None:
    """None if the board answered a read within ``timeout_s``, else why not."""
    with trio.move_on_after(timeout_s):
        try:
            await trio.to_thread.run_sync(
                health.probe, timeout_s / 2, limiter=_probe_limiter(), abandon_on_cancel=True
            )
        except Exception as exc:
            log.warning("health check: the board cannot be read: %s", exc)
            return f"the board cannot be read: {exc}"
        return None
    log.warning("health check: the board did not answer within %.1f s", timeout_s)
    return f"the board did not answer within {timeout_s:g} s"


@bp.get("/healthz")
async def healthz():
    problem = await _board_reachable(HEALTH_TIMEOUT_S)
    if problem is not None:
        return error_body(503, "unhealthy", problem, {"board": "unreachable"})
    return jsonify({"status": "ok", "board": "ok", "version": __version__})


def _supervisor_status() -> dict[str, Any]:
    now = utcnow()
    # Liveness by the board's clock, whatever this host's says.
    status = heartbeats.status(ready_jobs=job_views.count_ready(now=now))
    # Public: totals only, not the hosts and pids of each supervisor.
    status.pop("supervisors", None)
    return status


def _disk(min_free_mb: int) -> dict[str, Any]:
    usage = shutil.disk_usage(state().home.root)
    return {
        "freeBytes": usage.free,
        "totalBytes": usage.total,
        "minFreeBytes": min_free_mb * 1024 * 1024,
        "ok": usage.free >= min_free_mb * 1024 * 1024,
    }


@bp.get("/readyz")
async def readyz():
    problems: list[str] = []
    board_problem = await _board_reachable(HEALTH_TIMEOUT_S)
    supervisor: dict[str, Any] | None = None
    if board_problem is not None:
        problems.append(board_problem)
    else:
        with trio.move_on_after(READY_TIMEOUT_S):
            supervisor = await trio.to_thread.run_sync(
                _supervisor_status, limiter=_probe_limiter(), abandon_on_cancel=True
            )
        if supervisor is None:
            problems.append("the supervisors' heartbeats could not be read in time")
        elif not supervisor["alive"]:
            problems.append("no supervisor is alive: jobs will not run")
    disk = await trio.to_thread.run_sync(_disk, state().config.min_free_mb)
    if not disk["ok"]:
        problems.append(
            f"the home has {disk['freeBytes'] // (1024 * 1024)} MiB free, "
            f"under the {state().config.min_free_mb} MiB required"
        )
    report = {
        "board": "ok" if board_problem is None else "unreachable",
        "supervisor": supervisor,
        "disk": disk,
    }
    if problems:
        return error_body(503, "not_ready", "; ".join(problems), report)
    return jsonify({"status": "ready", **report})
