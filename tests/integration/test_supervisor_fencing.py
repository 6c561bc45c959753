"""Several ``crewboard supervisor`` processes on one board, fenced by run
leases: a frozen supervisor's runner stops itself before a peer reruns its
job, supervisors that share a hostname but not a pid namespace leave each
other's runs alone, a supervisor cut off from the board stops its runners,
and a host whose clock runs fast takes no live run."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from crewboard import sessionlog
from crewboard.board.models import Heartbeat, JobStatus, Run, RunOutcome
from crewboard.clock import parse_iso, utcnow
from crewboard.config import Config
from crewboard.home import Home
from tests.support import crews, need
from tests.support.procs import Proc, child_processes, gone
from tests.support.supervisor import started, supervisor_process
from tests.support.waits import wait_until

# Short leases: a heartbeat every 0.2 s, a lease of 3 s (the runner gives up
# after 2.25 s untouched, the supervisor fences after 1.5 s unrenewed).
LEASED = {"CREWBOARD_HEARTBEAT_S": "0.2", "CREWBOARD_LEASE_S": "3"}
LONG_JOB = "/sleep 600\nThen answer."


def live_run(job_id: int) -> Run:
    """The job's live run, once its runner's pid is on the board."""

    def probe() -> Run | None:
        live = [r for r in crews.runs(job_id) if r.outcome == RunOutcome.RUNNING and r.pid]
        return live[0] if live else None

    return wait_until(probe, 20, f"a live run of job {job_id} with a pid")  # type: ignore[return-value]


def beat_of(supervisor_id: str) -> Heartbeat:
    return Heartbeat.get(Heartbeat.supervisor_id == supervisor_id)


_markers = itertools.count()


def wait_for_a_reaper_round(supervisor_id: str) -> None:
    """Wait until the supervisor's reaper has looked at every live run: a
    marker run that only it sees orphaned (owned by a heartbeat naming its
    own pid under its own host identity) is closed."""
    beat = beat_of(supervisor_id)
    now = utcnow()
    marker_id = f"marker-{next(_markers)}-{supervisor_id}"
    Heartbeat.create(
        supervisor_id=marker_id,
        pid=beat.pid,
        host=beat.host,
        host_identity=beat.host_identity,
        version="test",
        started_at=now,
        beat_at=now,
        interval_s=3600,
    )
    job_id = crews.add_job("Say hello.", extra={"status": JobStatus.RUNNING})
    marker = Run.create(
        job=job_id, outcome=RunOutcome.RUNNING, supervisor_id=marker_id, started_at=now
    )
    wait_until(
        lambda: Run.get_by_id(marker.id).outcome != RunOutcome.RUNNING,
        20,
        f"a reaper round of {supervisor_id}",
    )


def test_a_frozen_supervisors_runner_stops_itself_before_a_peer_reruns_its_job(
    home: Home,
) -> None:
    job_id = crews.add_job(LONG_JOB)
    with supervisor_process(home.root, LEASED) as owner:
        started(owner)
        first = live_run(job_id)
        with supervisor_process(home.root, LEASED) as peer:
            started(peer)
            owner.popen.send_signal(signal.SIGSTOP)
            try:
                # Nobody can stop the runner for its frozen supervisor: it stops itself.
                wait_until(lambda: gone(first.pid), 20, "the frozen supervisor's runner to stop")
                second = live_run_after(job_id, first.id)
                records = sessionlog.read_records(first.log_path)
                terminal = records[-1]
                assert terminal["type"] == "error" and terminal.get("interrupted"), terminal
                assert "lease lapsed" in terminal["message"]
                # The rerun's runner began after the first runner had written
                # its last record: the two never ran at once.
                rerun_start = wait_until(
                    lambda: sessionlog.read_records(second.log_path)[:1], 20, "the rerun's log"
                )[0]
                assert parse_iso(rerun_start["ts"]) > max(parse_iso(r["ts"]) for r in records)
                closed = Run.get_by_id(first.id)
                assert closed.outcome == RunOutcome.INTERRUPTED
                assert "lease" in (closed.error or "")
            finally:
                owner.popen.send_signal(signal.SIGCONT)
            # Thawed, the owner finds the run is no longer its own and leaves it be.
            wait_for_a_reaper_round(peer_id(peer))
            (live,) = [r for r in crews.runs(job_id) if r.outcome == RunOutcome.RUNNING]
            assert live.id == second.id and not gone(second.pid)
            assert Run.get_by_id(first.id).outcome == RunOutcome.INTERRUPTED
            peer.stop()
        owner.stop()


def test_a_runner_whose_supervisor_renews_its_lease_runs_past_the_lease(home: Home) -> None:
    # A lease of 3 s: a runner told of no renewal stops itself after 2.25 s.
    job_id = crews.add_job("/sleep 4\nThen answer.")
    with supervisor_process(home.root, LEASED) as owner:
        started(owner)
        wait_until(lambda: crews.job(job_id).status == JobStatus.DONE, 30, "the job to be done")
        (run,) = crews.runs(job_id)
        assert run.outcome == RunOutcome.SUCCEEDED
        assert run.duration_s is not None and run.duration_s > 3
        owner.stop()


def live_run_after(job_id: int, after_run_id: int) -> Run:
    """The job's live run that followed ``after_run_id``, with its pid."""

    def probe() -> Run | None:
        live = [
            r
            for r in crews.runs(job_id)
            if r.id > after_run_id and r.outcome == RunOutcome.RUNNING and r.pid
        ]
        return live[0] if live else None

    return wait_until(probe, 30, "a peer to rerun the job")  # type: ignore[return-value]


def peer_id(proc: Proc) -> str:
    """The supervisor id of a supervisor process, from its ready line."""
    line = proc.wait_for_line(lambda line: "ready" in line and "supervisor" in line)
    return line.split("supervisor ", 1)[1].split()[0]


def _can_unshare() -> bool:
    return shutil.which("unshare") is not None and os.geteuid() == 0


def test_supervisors_sharing_a_hostname_in_two_pid_namespaces_leave_each_others_runs(
    home: Home,
) -> None:
    need(_can_unshare(), "needs root and unshare(1) to start a supervisor in its own pid namespace")
    one_each = {**LEASED, "CREWBOARD_CONCURRENCY": "1"}
    first_job = crews.add_job(LONG_JOB)
    with supervisor_process(home.root, one_each) as host_side:
        started(host_side)
        first = live_run(first_job)
        second_job = crews.add_job(LONG_JOB)
        # The same hostname, another pid namespace (as two containers are):
        # each one's pids mean nothing to the other.
        argv = ["unshare", "--pid", "--kill-child=SIGTERM", "--mount-proc"]
        argv += [sys.executable, "-m", "crewboard", "supervisor", "--home", str(home.root)]
        with Proc(argv, one_each) as contained:
            started(contained)
            second = live_run(second_job)
            ids = {beat_of(first.supervisor_id).host, beat_of(second.supervisor_id).host}
            assert ids == {socket.gethostname()}
            # Several reaper rounds of each, every live run looked at.
            for _ in range(2):
                wait_for_a_reaper_round(first.supervisor_id)
                wait_for_a_reaper_round(second.supervisor_id)
            for run in (first, second):
                assert Run.get_by_id(run.id).outcome == RunOutcome.RUNNING
            assert not gone(first.pid)
            # unshare(1) passes no signal on: stop the supervisor inside.
            (inside,) = [
                pid for pid, state, _ in child_processes(contained.popen.pid) if state != "Z"
            ]
            os.kill(inside, signal.SIGTERM)
            assert contained.wait_exit() == 0, contained.output()
        host_side.stop()


class Cuttable:
    """A TCP relay to PostgreSQL that a test can cut: every connection
    through it dropped, and new ones refused."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._socks += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def cut(self) -> None:
        self.listener.close()
        with self._lock:
            for sock in self._socks:
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


@contextmanager
def cuttable_board(url: str) -> Iterator[tuple[Cuttable, str]]:
    """The PostgreSQL board at ``url`` reached through a :class:`Cuttable`
    relay; yields the relay and the URL through it."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    relay = Cuttable((parts.hostname or "127.0.0.1", parts.port or 5432))
    netloc = (
        f"{parts.username}@127.0.0.1:{relay.port}" if parts.username else f"127.0.0.1:{relay.port}"
    )
    try:
        yield relay, urlunsplit(parts._replace(netloc=netloc))
    finally:
        relay.cut()


@pytest.mark.postgres
def test_a_supervisor_cut_off_from_the_board_stops_its_runners(pg: tuple[Config, Home]) -> None:
    config, home = pg
    job_id = crews.add_job(LONG_JOB)
    with cuttable_board(config.database_url) as (relay, url):
        env = {**LEASED, "CREWBOARD_DATABASE_URL": url}
        with supervisor_process(home.root, env) as cut_off:
            started(cut_off)
            run = live_run(job_id)
            relay.cut()
            # Within half a lease it stops the runner itself, before the lease
            # could expire and a peer rerun the job.
            cut_off.wait_for_line(lambda line: "could not renew the run leases" in line, 20)
            wait_until(lambda: gone(run.pid), 10, "the cut-off supervisor's runner to stop")
            last = sessionlog.last_record(run.log_path)
            assert last is not None and last["type"] == "error", last
            deadline_ts = parse_iso(last["ts"])
            expires_at = Run.get_by_id(run.id).lease_expires_at
            assert deadline_ts < expires_at, (deadline_ts, expires_at)
            cut_off.stop()


# A site customisation that sets this host's clock 8 s fast for the
# process: the time every part of crewboard reads, and the OS's.
FAST_CLOCK = """
import time as _time
from datetime import datetime as _datetime, timedelta as _timedelta

import crewboard.clock as _clock

_SKEW_S = 8.0
_real_time = _time.time
_time.time = lambda: _real_time() + _SKEW_S
_real_utcnow = _clock.utcnow
_clock.utcnow = lambda: _real_utcnow() + _timedelta(seconds=_SKEW_S)
"""


@pytest.mark.postgres
def test_a_host_whose_clock_runs_fast_takes_no_live_run(
    pg: tuple[Config, Home], tmp_path: Path
) -> None:
    config, home = pg
    site = tmp_path / "fast-clock"
    site.mkdir()
    (site / "sitecustomize.py").write_text(FAST_CLOCK)
    job_id = crews.add_job(LONG_JOB)
    one = {**LEASED, "CREWBOARD_CONCURRENCY": "1", "CREWBOARD_DATABASE_URL": config.database_url}
    with supervisor_process(home.root, one) as owner:
        started(owner)
        run = live_run(job_id)
        fast = {**one, "PYTHONPATH": os.pathsep.join([str(site), *sys.path])}
        with supervisor_process(home.root, fast) as skewed:
            started(skewed)
            skewed_id = peer_id(skewed)
            # Its heartbeat is stamped by the board's clock, not its own.
            assert abs((beat_of(skewed_id).beat_at - utcnow()).total_seconds()) < 4
            for _ in range(3):
                wait_for_a_reaper_round(skewed_id)
            assert Run.get_by_id(run.id).outcome == RunOutcome.RUNNING
            assert not gone(run.pid)
            skewed.stop()
        owner.stop()


@pytest.mark.parametrize("late", ["text", "final_result"])
def test_a_record_after_the_terminal_record_is_never_part_of_the_run(
    tmp_path: Path, late: str
) -> None:
    path = tmp_path / "run.jsonl"
    with sessionlog.LogWriter(path) as writer:
        writer.append("user_message", text="hi")
        writer.append("error", message="run interrupted: its lease lapsed", interrupted=True)
        # A runner cut off from its supervisor went on writing.
        writer.append(late, text="too late")
    records = sessionlog.read_records(path)
    assert [r["type"] for r in records] == ["user_message", "error"]
    assert sessionlog.last_record(path)["type"] == "error"
    cursor = sessionlog.LogCursor(path)
    assert [r["seq"] for r in cursor.read_new()] == [1, 2]
    # A writer numbers on after every record, shown or not.
    assert sessionlog.ensure_terminal(path, "again") is None
    with sessionlog.LogWriter(path) as writer:
        assert writer.append("user_message", text="next turn")["seq"] == 4
    assert [r["seq"] for r in sessionlog.read_records(path)] == [1, 2, 4]
