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

from crewboard.board import recovery
from crewboard.board.models import Heartbeat, JobStatus, Run, RunOutcome
from crewboard.clock import utcnow
from crewboard.home import Home
from crewboard.supervisor.reaper import pid_alive
from tests.support import crews, need
from tests.support.procs import Proc, wait_until
from tests.support.supervisor import children_running, supervisor_process

HOST = socket.gethostname()


def gone(pid: int) -> bool:
    """The process has exited (a zombie nobody has reaped yet counts)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def started(proc: Proc) -> None:
    proc.wait_for_line(lambda line: "ready" in line and "supervisor" in line)


def running_pid(job_id: int) -> int:
    def probe() -> int | None:
        live = [r for r in crews.runs(job_id) if r.outcome == RunOutcome.RUNNING]
        return live[0].pid if live else None

    return wait_until(probe, 15, "a live run with a pid")  # type: ignore[return-value]


def no_job_has_two_live_runs() -> None:
    live = [r.job_id for r in crews.live_runs()]
    assert len(live) == len(set(live)), f"two live runs for one job: {live}"


def test_sigterm_drains_then_interrupts_and_requeues(home: Home) -> None:
    job_id = crews.add_job("/sleep 30\nThen answer.")
    with supervisor_process(home.root, {"CREWBOARD_DRAIN_S": "0.5"}) as proc:
        started(proc)
        runner = running_pid(job_id)
        stopping = time.monotonic()
        proc.popen.send_signal(signal.SIGTERM)
        assert proc.popen.wait(10) == 0, proc.output()
        # drain_s 0.5 + the runner's quick exit on SIGTERM, well inside grace + margin
        assert time.monotonic() - stopping < 0.5 + 1 + 2
    assert gone(runner)
    (run,) = crews.runs(job_id)
    assert run.outcome == RunOutcome.INTERRUPTED and run.ended_at is not None
    job = crews.job(job_id)
    assert job.status == JobStatus.READY and job.attempts == 0
    assert Heartbeat.get().stopped_at is not None
    assert not home.wake_socket.exists()


def test_a_second_signal_cuts_the_drain_short(home: Home) -> None:
    job_id = crews.add_job("/sleep 30\nThen answer.")
    with supervisor_process(home.root, {"CREWBOARD_DRAIN_S": "30"}) as proc:
        started(proc)
        running_pid(job_id)
        proc.popen.send_signal(signal.SIGINT)
        proc.wait_for_line(lambda line: "draining 1 run" in line)
        stopping = time.monotonic()
        proc.popen.send_signal(signal.SIGINT)
        assert proc.popen.wait(10) == 0, proc.output()
        assert time.monotonic() - stopping < 3  # not the 30 s drain
    assert crews.runs(job_id)[0].outcome == RunOutcome.INTERRUPTED


def test_an_idle_supervisor_exits_promptly_on_sigterm(home: Home) -> None:
    with supervisor_process(home.root) as proc:
        started(proc)
        stopping = time.monotonic()
        proc.popen.send_signal(signal.SIGTERM)
        assert proc.popen.wait(10) == 0, proc.output()
        assert time.monotonic() - stopping < 5


def test_a_killed_supervisors_runners_exit_and_a_restart_recovers_its_runs(home: Home) -> None:
    job_id = crews.add_job("/sleep 2\nThen answer.")
    with supervisor_process(home.root) as first:
        started(first)
        runner = running_pid(job_id)
        (template,) = children_running(first.popen.pid, "crewboard.runner.template")
        first.popen.kill()
        first.popen.wait(5)
    # Its runner sees EOF on stdin and exits at once; nobody has to kill it.
    # Nor the runner template, which sees EOF the same way.
    wait_until(lambda: gone(runner), 3, "the orphaned runner to exit")
    wait_until(lambda: gone(template), 3, "the runner template to exit")
    (orphan,) = crews.runs(job_id)
    assert orphan.outcome == RunOutcome.RUNNING  # nobody has closed it yet
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
        assert recovery.recover_orphans("peer", HOST, pid_alive, now=utcnow()) == []
        with supervisor_process(home.root, {"CREWBOARD_CONCURRENCY": "1"}) as peer:
            started(peer)
            time.sleep(1.5)  # past the peer's first periodic recovery (5 heartbeats)
            (run,) = crews.runs(job_id)
            assert run.outcome == RunOutcome.RUNNING and not gone(runner)
            # …until the owner dies: then the peer recovers the run and reruns the job.
            owner.popen.kill()
            owner.popen.wait(5)

            def rerun() -> bool:
                no_job_has_two_live_runs()
                runs = crews.runs(job_id)
                return len(runs) == 2 and runs[1].outcome == RunOutcome.RUNNING

            wait_until(rerun, 10, "the peer to recover and rerun the job")
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


def test_a_stalled_supervisor_stops_the_runner_of_a_run_a_peer_took_over(home: Home) -> None:
    job_id = crews.add_job("/sleep 30\nThen answer.")
    with supervisor_process(home.root) as stalled:
        started(stalled)
        runner = running_pid(job_id)
        stalled.popen.send_signal(signal.SIGSTOP)  # alive, but its heartbeat goes stale
        try:
            with supervisor_process(home.root) as peer:
                started(peer)

                def taken_over() -> bool:
                    no_job_has_two_live_runs()
                    runs = crews.runs(job_id)
                    return (
                        len(runs) == 2
                        and runs[1].outcome == RunOutcome.RUNNING
                        and runs[1].pid is not None
                    )

                wait_until(taken_over, 10, "the peer to recover the stale run and rerun it")
                assert not gone(runner)  # the stalled supervisor cannot stop it yet…
                stalled.popen.send_signal(signal.SIGCONT)
                # …and once it runs again it sees the run is no longer its own.
                wait_until(lambda: gone(runner), 5, "the stalled supervisor to stop its runner")
                first, second = crews.runs(job_id)
                assert first.outcome == RunOutcome.INTERRUPTED
                assert second.outcome == RunOutcome.RUNNING and not gone(second.pid)
                peer.stop()
        finally:
            stalled.popen.send_signal(signal.SIGCONT)
