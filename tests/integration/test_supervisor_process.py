"""``crewboard supervisor`` as a real process, where process death matters:
SIGTERM drains, ``kill -9`` of the supervisor (its runners exit, a restart
recovers their runs), peers never recovering a live supervisor's runs, and the
systemd notify protocol against a real datagram socket."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import pytest

from crewboard import sessionlog
from crewboard.board import recovery
from crewboard.board.models import Heartbeat, JobStatus, Run, RunOutcome
from crewboard.clock import utcnow
from crewboard.home import Home
from crewboard.processes import pid_alive
from crewboard.supervisor.heartbeat import host_identity
from tests.support import crews, need
from tests.support.procs import gone
from tests.support.supervisor import children_running, started, supervisor_process
from tests.support.waits import wait_until

HOST = socket.gethostname()
# How a runner that stops on SIGTERM exits (128 + 15); a SIGKILL shows as -9.
EXIT_ON_SIGTERM = 143


def running_pid(job_id: int) -> int:
    def probe() -> int | None:
        live = [r for r in crews.runs(job_id) if r.outcome == RunOutcome.RUNNING]
        return live[0].pid if live else None

    return wait_until(probe, 15, "a live run with a pid")  # type: ignore[return-value]


def in_order(output: str, *fragments: str) -> bool:
    """Each fragment appears in ``output``, each after the one before."""
    at = 0
    for fragment in fragments:
        at = output.find(fragment, at)
        if at < 0:
            return False
        at += len(fragment)
    return True


def add_run_only_this_pid_sees_orphaned(pid: int) -> int:
    """A running run of a supervisor whose heartbeat is fresh but names
    ``pid`` under this host identity. To the process with that pid its owner is gone (a
    supervisor's pid now taken by itself); to every other supervisor the owner
    is alive. Returns the run's id."""
    now = utcnow()
    Heartbeat.create(
        supervisor_id="marker",
        pid=pid,
        host=HOST,
        host_identity=host_identity(),
        version="test",
        started_at=now,
        beat_at=now,
        interval_s=3600,
    )
    job_id = crews.add_job("Say hello.", extra={"status": JobStatus.RUNNING})
    run = Run.create(job=job_id, outcome=RunOutcome.RUNNING, supervisor_id="marker", started_at=now)
    return run.id


def no_job_has_two_live_runs() -> None:
    live = [r.job_id for r in crews.live_runs()]
    assert len(live) == len(set(live)), f"two live runs for one job: {live}"


def test_sigterm_drains_then_interrupts_and_requeues(home: Home) -> None:
    job_id = crews.add_job("/sleep 600\nThen answer.")
    # A grace far longer than a runner needs: a SIGKILL would show as exit -9.
    env = {"CREWBOARD_DRAIN_S": "0.5", "CREWBOARD_GRACE_S": "20"}
    with supervisor_process(home.root, env) as proc:
        started(proc)
        runner = running_pid(job_id)
        proc.popen.send_signal(signal.SIGTERM)
        assert proc.wait_exit() == 0, proc.output()
    assert gone(runner)
    (run,) = crews.runs(job_id)
    # It drained first, then stopped the run, whose runner ended on that SIGTERM.
    assert in_order(proc.output(), "draining 1 run(s)", f"stopping run {run.id} ")
    assert run.outcome == RunOutcome.INTERRUPTED and run.ended_at is not None
    assert run.exit_code == EXIT_ON_SIGTERM
    job = crews.job(job_id)
    assert job.status == JobStatus.READY and job.attempts == 0
    assert Heartbeat.get().stopped_at is not None
    assert not home.wake_socket.exists()


def test_a_second_signal_cuts_the_drain_short(home: Home) -> None:
    job_id = crews.add_job("/sleep 600\nThen answer.")
    # A drain no test could wait out: ending at all means it was cut short.
    with supervisor_process(home.root, {"CREWBOARD_DRAIN_S": "3600"}) as proc:
        started(proc)
        running_pid(job_id)
        proc.popen.send_signal(signal.SIGINT)
        proc.wait_for_line(lambda line: "draining 1 run" in line)
        proc.popen.send_signal(signal.SIGINT)
        assert proc.wait_exit() == 0, proc.output()
    assert "second signal: stopping the running jobs now" in proc.output()
    assert crews.runs(job_id)[0].outcome == RunOutcome.INTERRUPTED


def test_an_idle_supervisor_exits_promptly_on_sigterm(home: Home) -> None:
    # Neither a drain nor a poll interval it could be waiting out stands
    # between the signal and the exit.
    env = {"CREWBOARD_DRAIN_S": "3600", "CREWBOARD_POLL_S": "3600"}
    with supervisor_process(home.root, env) as proc:
        started(proc)
        proc.popen.send_signal(signal.SIGTERM)
        assert proc.wait_exit() == 0, proc.output()
    assert "draining" not in proc.output()
    assert Heartbeat.get().stopped_at is not None


def test_a_killed_supervisors_runners_exit_and_a_restart_recovers_its_runs(home: Home) -> None:
    job_id = crews.add_job("/sleep 2\nThen answer.")
    with supervisor_process(home.root) as first:
        started(first)
        runner = running_pid(job_id)
        (template,) = children_running(first.popen.pid, "crewboard.runner.template")
        first.popen.kill()
        first.popen.wait(5)
    # Its runner sees EOF on stdin and exits at once, before its 2 s sleep is
    # over, saying why; nobody has to kill it. Nor the runner template, which
    # sees EOF the same way.
    wait_until(lambda: gone(runner), 30, "the orphaned runner to exit")
    wait_until(lambda: gone(template), 30, "the runner template to exit")
    (orphan,) = crews.runs(job_id)
    assert orphan.outcome == RunOutcome.RUNNING  # nobody has closed it yet
    last = sessionlog.last_record(orphan.log_path)
    assert last["type"] == "error" and "parent went away" in last["message"], last
    with supervisor_process(home.root) as second:
        started(second)

        def done() -> bool:
            no_job_has_two_live_runs()
            return crews.job(job_id).status == JobStatus.DONE

        wait_until(done, 15, "the requeued job to finish")
        second.stop()
    first_run, second_run = crews.runs(job_id)
    assert first_run.outcome == RunOutcome.INTERRUPTED
    assert second_run.outcome == RunOutcome.SUCCEEDED
    assert crews.job(job_id).attempts == 0  # the supervisor's death cost no retry


def test_a_live_supervisors_runs_are_never_recovered_by_a_peer(home: Home) -> None:
    job_id = crews.add_job("/sleep 30\nThen answer.")
    with supervisor_process(home.root) as owner:
        started(owner)
        runner = running_pid(job_id)
        # A peer's recovery (here: in this process) leaves the live owner's run alone…
        assert recovery.recover_orphans("peer", host_identity(), pid_alive) == []
        with supervisor_process(home.root, {"CREWBOARD_CONCURRENCY": "1"}) as peer:
            started(peer)
            # …and so does the peer's own periodic recovery: once it has closed
            # a marker run that only it can see is orphaned, it has looked at
            # the owner's run too.
            marker = add_run_only_this_pid_sees_orphaned(peer.popen.pid)
            closed = wait_until(
                lambda: (
                    Run.get_by_id(marker).outcome != RunOutcome.RUNNING and Run.get_by_id(marker)
                ),
                15,
                "the peer's periodic recovery to close the marker run",
            )
            assert closed.outcome == RunOutcome.INTERRUPTED
            # The log line follows the commit, through the output pipe's reader.
            wait_until(
                lambda: f"recovered run {marker} " in peer.output(), 15, "the recovery's log line"
            )
            (run,) = crews.runs(job_id)
            assert run.outcome == RunOutcome.RUNNING and not gone(runner)
            # …until the owner dies: then the peer recovers the run and reruns the job.
            owner.popen.kill()
            owner.popen.wait(5)

            def rerun() -> bool:
                no_job_has_two_live_runs()
                runs = crews.runs(job_id)
                return len(runs) == 2 and runs[1].outcome == RunOutcome.RUNNING

            wait_until(rerun, 30, "the peer to recover and rerun the job")
            assert crews.runs(job_id)[0].outcome == RunOutcome.INTERRUPTED
            peer.stop()


@pytest.fixture
def notify_socket(tmp_path: Path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    sock.bind(str(path))
    sock.settimeout(0.2)
    yield sock, path
    sock.close()


def receive(sock: socket.socket, until: str, timeout_s: float = 10) -> list[str]:
    """Datagrams received until one holds ``until``."""
    got: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            got.append(sock.recv(4096).decode())
        except TimeoutError:
            continue
        if until in got[-1]:
            return got
    raise AssertionError(f"no {until!r} from the supervisor; got {got}")


def test_the_supervisor_speaks_the_systemd_notify_protocol(home: Home, notify_socket) -> None:
    sock, path = notify_socket
    job_id = crews.add_job("/sleep 30\nThen answer.")
    env = {"NOTIFY_SOCKET": str(path), "CREWBOARD_CONCURRENCY": "3"}
    with supervisor_process(home.root, env) as proc:
        messages = receive(sock, "READY=1")
        runner = running_pid(job_id)
        messages += receive(sock, "STATUS=running 1/3")
        assert any("WATCHDOG=1" in m for m in messages)
        beat = Heartbeat.get()
        assert (beat.running, beat.capacity, beat.pid) == (1, 3, proc.popen.pid)
        # The runner never sees NOTIFY_SOCKET (nor any CREWBOARD_* setting).
        try:
            environ = Path(f"/proc/{runner}/environ").read_bytes().split(b"\0")
        except PermissionError:
            environ = None
        need(environ is not None, "reading a non-dumpable runner's environ needs root")
        names = {item.split(b"=", 1)[0].decode() for item in environ if item}
        assert "NOTIFY_SOCKET" not in names
        assert not [n for n in names if n.startswith("CREWBOARD_")]
        proc.popen.send_signal(signal.SIGTERM)
        messages = receive(sock, "STOPPING=1")
        assert proc.popen.wait(15) == 0
    assert Run.get().outcome == RunOutcome.INTERRUPTED


def test_a_stalled_supervisors_runner_stops_before_a_peer_takes_its_run_over(home: Home) -> None:
    job_id = crews.add_job("/sleep 30\nThen answer.")
    leased = {"CREWBOARD_LEASE_S": "3"}
    with supervisor_process(home.root, leased) as stalled:
        started(stalled)
        runner = running_pid(job_id)
        stalled.popen.send_signal(signal.SIGSTOP)  # alive, but its heartbeat goes stale
        try:
            with supervisor_process(home.root, leased) as peer:
                started(peer)

                def taken_over() -> bool:
                    no_job_has_two_live_runs()
                    runs = crews.runs(job_id)
                    return (
                        len(runs) == 2
                        and runs[1].outcome == RunOutcome.RUNNING
                        and runs[1].pid is not None
                    )

                wait_until(taken_over, 30, "the peer to recover the stale run and rerun it")
                # Its lease lapsed first, and with it the runner stopped itself.
                assert gone(runner)
                stalled.popen.send_signal(signal.SIGCONT)
                # Running again, the stalled supervisor reaps its runner and
                # leaves the rerun alone.
                first_id = crews.runs(job_id)[0].id
                wait_until(
                    lambda: f"run {first_id} of job {job_id}: " in stalled.output(),
                    30,
                    "the stalled supervisor to reap its runner",
                )
                first, second = crews.runs(job_id)
                assert first.outcome == RunOutcome.INTERRUPTED
                assert second.outcome == RunOutcome.RUNNING and not gone(second.pid)
                peer.stop()
        finally:
            stalled.popen.send_signal(signal.SIGCONT)
