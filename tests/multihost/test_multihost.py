"""Several hosts, one PostgreSQL board: three supervisors and two web nodes,
each on a simulated host of its own (:mod:`tests.multihost.cluster`), work
through a batch of jobs created on either web node while one supervisor is
killed (``kill -9``) and another is frozen (SIGSTOP) for longer than its
lease, then thawed.

Two of the supervisors' hosts share a hostname, and every host's crewboard
process has a low pid of its own namespace, so anything keyed by hostname or
pid alone mistakes one host for another.

What a user must find afterwards:

- no lost job: every job is done;
- no overlapping executions: no two runs of one job worked at the same
  time, by their runners' own log times;
- no job completed twice: one succeeded run per job on the board, and one
  ``final_result`` among its runs' logs;
- every run streams its frames (the runner's log, record for record, then
  ``done`` with the board's outcome) from either web node, and every saved
  artifact is served by either;
- the change feed, followed live on each web node from before the first job,
  holds every event the board holds.

Every property is checked and the failures are reported together.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import httpx
import pytest
import trio

from crewboard.board.models import Event, Job, JobStatus, Run, RunOutcome
from tests.multihost.cluster import Cluster, Host, open_cluster
from tests.multihost.evidence import (
    RunSeen,
    completed_twice,
    frames_differ,
    logged_on_two_hosts,
    overlapping_runs,
    read_log,
    report,
)
from tests.support.served import add_account
from tests.support.sse_client import open_raw_stream
from tests.support.waits import wait_for

pytestmark = pytest.mark.postgres

JOBS = 45
# Every third job saves an artifact.
ARTIFACT_EVERY = 3
# Each job works in steps for about STEPS seconds: longer than a lease, so a
# frozen supervisor's runs are still going when its lease runs out.
STEPS = 5
# Short intervals, the same code paths: a heartbeat (and lease renewal) every
# second; supervisors also poll, as a web node's wake-up may not reach them.
SETTINGS = {
    "CREWBOARD_HEARTBEAT_S": "1",
    "CREWBOARD_POLL_S": "0.3",
    "CREWBOARD_CONCURRENCY": "5",
    "CREWBOARD_DRAIN_S": "2",
    "CREWBOARD_GRACE_S": "1",
    "CREWBOARD_QUEUED_JOBS_PER_USER": "0",
}

WORKFLOW = """\
name: Shift
description: Works through the steps its prompt scripts, on the offline model.
inputs:
  prompt: {type: string, required: true, maxLength: 4000}
defaults: {agent: writer, timeout: 120, retries: 0}
jobs:
  work:
    title: "{{ inputs.prompt.splitlines()[0] }}"
    prompt: "{{ inputs.prompt }}"
"""


def prompt(n: int) -> str:
    """Job ``n``'s script: STEPS one-second steps, each leaving a record, and
    an artifact for every ARTIFACT_EVERY-th job."""
    lines = [f"Job {n}: work in steps."]
    for _ in range(STEPS):
        lines += ["/sleep 1", "/tool list_files {}"]
    if n % ARTIFACT_EVERY == 0:
        lines += [f"/artifact report-{n}.md", f"# Report {n}", artifact_text(n)]
    return "\n".join(lines)


def artifact_text(n: int) -> str:
    return f"Written by job {n}."


async def test_three_supervisors_and_two_web_nodes_survive_a_kill_and_a_freeze(
    pg, tmp_path: Path
) -> None:
    config, _ = pg
    workflows = tmp_path / "workflows"
    workflows.mkdir()
    (workflows / "shift.job_workflow.yaml").write_text(WORKFLOW)
    env = {
        **SETTINGS,
        "CREWBOARD_DATABASE_URL": str(config.database_url),
        "CREWBOARD_WORKFLOWS": str(workflows),
    }
    token = add_account(tmp_path / "cli-home", "admin@example.test", admin=True, env=env)
    findings: dict[str, list[str]] = {}
    with open_cluster(tmp_path / "cluster", env) as cluster:
        # Hosts a and c share a hostname.
        sup_a = cluster.start("sup-a", "worker", "supervisor")
        sup_b = cluster.start("sup-b", "worker-b", "supervisor")
        sup_c = cluster.start("sup-c", "worker", "supervisor")
        web_1 = cluster.start("web-1", "web-1", "web", "--port", "0")
        web_2 = cluster.start("web-2", "web-2", "web", "--port", "0")
        ids = {host.name: supervisor_id(host) for host in (sup_a, sup_b, sup_c)}
        urls = {host.name: web_url(host) for host in (web_1, web_2)}
        clients = {
            name: httpx.AsyncClient(
                base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30
            )
            for name, url in urls.items()
        }
        feeds: dict[str, dict[int, dict]] = {name: {} for name in urls}
        try:
            async with trio.open_nursery() as nursery:
                for name, url in urls.items():
                    await nursery.start(follow_feed, url, token, feeds[name], findings)
                jobs = await create_jobs(list(clients.values()))
                await kill_and_freeze(sup_a, sup_b, ids, findings)
                findings["lost jobs"] = await wait_all_settled(jobs)
                runs = await gather_runs(cluster, jobs, {ids[sup_a.name], ids[sup_b.name]})
                findings["overlapping executions"] = [
                    line for job_runs in runs.values() for line in overlapping_runs(job_runs)
                ]
                findings["runs written on two hosts"] = [
                    line for job_runs in runs.values() for line in logged_on_two_hosts(job_runs)
                ]
                findings["jobs completed twice"] = [
                    line for job_runs in runs.values() for line in completed_twice(job_runs)
                ]
                findings["runs not streamed"] = await check_streams(clients, runs)
                findings["artifacts not served"] = await check_artifacts(clients, jobs)
                findings["change feed incomplete"] = await check_feeds(feeds)
                nursery.cancel_scope.cancel()
        finally:
            for client in clients.values():
                await client.aclose()
        failed = report(findings)
        if failed:
            pytest.fail(f"{failed}\n\nhost logs:\n{host_tails(cluster)}", pytrace=False)


# --- starting the hosts ----------------------------------------------------------


def supervisor_id(host: Host) -> str:
    line = host.wait_for_line(" ready")
    match = re.search(r"supervisor (\S+) ready", line)
    assert match, line
    return match.group(1)


def web_url(host: Host) -> str:
    line = host.wait_for_line("crewboard web serving on ")
    return line.split("serving on ", 1)[1].split(",")[0].strip()


def host_tails(cluster: Cluster, lines: int = 15) -> str:
    return "\n".join(
        f"--- {host.name} ({host.hostname})\n" + "\n".join(host.output().splitlines()[-lines:])
        for host in cluster.hosts
    )


# --- the workload and the faults -----------------------------------------------------


async def create_jobs(clients: list[httpx.AsyncClient]) -> dict[int, int]:
    """Create the jobs over HTTP, alternating web nodes; job id → n."""
    jobs: dict[int, int] = {}
    for n in range(JOBS):
        response = await clients[n % len(clients)].post(
            "/api/jobs", json={"templateId": "shift", "inputs": {"prompt": prompt(n)}}
        )
        assert response.status_code == 201, response.text
        (job_id,) = response.json()["jobIds"]
        jobs[job_id] = n
    return jobs


def running_runs(supervisor: str) -> list[int]:
    """Runs the board has running for ``supervisor`` whose runner has started."""
    return [
        run.id
        for run in Run.select().where(
            Run.supervisor_id == supervisor,
            Run.outcome == RunOutcome.RUNNING,
            Run.pid.is_null(False),
        )
    ]


async def kill_and_freeze(
    killed: Host, frozen: Host, ids: dict[str, str], findings: dict[str, list[str]]
) -> None:
    """Kill one supervisor mid-run; then freeze another mid-run until peers
    have taken its runs back (its lease ran out), and thaw it."""
    from crewboard.board import db

    await wait_for(
        lambda: db.call(lambda: len(running_runs(ids[killed.name])) >= 2),
        60,
        f"{killed.name} running jobs",
    )
    killed.kill()
    await wait_for(
        lambda: db.call(lambda: len(running_runs(ids[frozen.name])) >= 2),
        60,
        f"{frozen.name} running jobs",
    )
    frozen.freeze()
    held = await db.call(running_runs, ids[frozen.name])

    def rescued() -> bool:
        return not Run.select().where(Run.id.in_(held), Run.outcome == RunOutcome.RUNNING).exists()

    try:
        await wait_for(lambda: db.call(rescued), 45, f"peers taking back {frozen.name}'s runs")
    except AssertionError as exc:
        findings["frozen supervisor's runs not taken back"] = [str(exc)]
    finally:
        frozen.thaw()


async def wait_all_settled(jobs: dict[int, int], timeout_s: float = 120) -> list[str]:
    """Wait until no job is waiting, ready or running any more; the jobs
    that did not end done, as findings."""
    from crewboard.board import db

    def unsettled() -> bool:
        going = (JobStatus.WAITING, JobStatus.READY, JobStatus.RUNNING)
        return not Job.select().where(Job.id.in_(list(jobs)), Job.status.in_(going)).exists()

    def not_done() -> list[Job]:
        return list(Job.select().where(Job.id.in_(list(jobs)), Job.status != JobStatus.DONE))

    try:
        await wait_for(lambda: db.call(unsettled), timeout_s, "every job settled")
    except AssertionError:
        pass
    return [
        f"job {job.id} is {job.status}: {job.blocked_reason or ''}"
        for job in await db.call(not_done)
    ]


# --- the evidence ----------------------------------------------------------------


async def gather_runs(
    cluster: Cluster, jobs: dict[int, int], faulted: set[str]
) -> dict[int, list[RunSeen]]:
    """Every run of the jobs, from the board, with the logs each host holds.
    A run of a ``faulted`` supervisor closed without its runner's exit code
    was closed by a peer's recovery: it is cut by the fault."""
    from crewboard.board import db

    rows = await db.call(lambda: list(Run.select().where(Run.job.in_(list(jobs))).order_by(Run.id)))
    runs: dict[int, list[RunSeen]] = defaultdict(list)
    for row in rows:
        cut = row.supervisor_id in faulted and row.exit_code is None
        seen = RunSeen(row.id, row.job_id, row.supervisor_id, row.outcome, cut_by_fault=cut)
        for host, path in cluster.logs_of_run(row.id):
            seen.logs[host.name] = await trio.to_thread.run_sync(read_log, str(path))
        runs[row.job_id].append(seen)
    return runs


async def run_frames(
    client: httpx.AsyncClient, job_id: int, run_id: int, latest: bool
) -> list[dict]:
    """The frames a web node streams for one run of a job: the job stream
    itself for its latest run; for an older one, the stream resumed from that
    run's start (``Last-Event-ID: <runId>:0``), up to the run's ``done``."""
    headers = {"Authorization": client.headers["Authorization"]}
    if not latest:
        headers["Last_Event_ID"] = f"{run_id}:0"
    frames = []
    async with open_raw_stream(
        str(client.base_url), f"/api/jobs/{job_id}/stream", **headers
    ) as raw:
        assert raw.status == 200, raw.status
        with trio.fail_after(30):
            while (frame := await raw.next_frame()) is not None:
                if frame.type == "done":
                    if frame.data.get("runId") == run_id:
                        frames.append({"type": frame.type, "data": frame.data})
                        break
                    continue
                if str(frame.id).startswith(f"{run_id}:"):
                    frames.append({"type": frame.type, "data": frame.data})
    return frames


async def check_streams(
    clients: dict[str, httpx.AsyncClient], runs: dict[int, list[RunSeen]]
) -> list[str]:
    """Every run streamed from every web node as its runner logged it."""
    found: list[str] = []
    limit = trio.CapacityLimiter(40)

    async def check(node: str, run: RunSeen, latest: bool) -> None:
        async with limit:
            try:
                frames = await run_frames(clients[node], run.job_id, run.run_id, latest)
            except (trio.TooSlowError, OSError, AssertionError) as exc:
                found.append(f"job {run.job_id} run {run.run_id} from {node}: {exc!r}")
                return
        if (wrong := frames_differ(run, node, frames)) is not None:
            found.append(wrong)

    async with trio.open_nursery() as nursery:
        for job_runs in runs.values():
            for run in job_runs:
                for node in clients:
                    nursery.start_soon(check, node, run, run is job_runs[-1])
    return sorted(found)


async def check_artifacts(clients: dict[str, httpx.AsyncClient], jobs: dict[int, int]) -> list[str]:
    found = []
    for job_id, n in jobs.items():
        if n % ARTIFACT_EVERY:
            continue
        for node, client in clients.items():
            response = await client.get(f"/api/jobs/{job_id}/artifact")
            if response.status_code != 200 or artifact_text(n) not in response.text:
                found.append(
                    f"job {job_id} from {node}: {response.status_code} {response.text[:120]!r}"
                )
    return found


async def follow_feed(
    url: str,
    token: str,
    seen: dict[int, dict],
    findings: dict[str, list[str]],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Follow a web node's change feed from the board's first event, keeping
    each event by id, until cancelled."""
    headers = {"Authorization": f"Bearer {token}", "Last_Event_ID": "0"}
    async with open_raw_stream(url, "/api/board/events", **headers) as raw:
        task_status.started()
        while (frame := await raw.next_frame()) is not None:
            if frame.type == "event":
                seen[frame.data["id"]] = frame.data
    findings.setdefault("change feed ended", []).append(f"the feed of {url} ended early")


async def check_feeds(feeds: dict[str, dict[int, dict]], timeout_s: float = 20) -> list[str]:
    """Each node's live feed holds every event of the board (given time to
    catch up with the last one)."""
    from crewboard.board import db

    events = await db.call(lambda: {e.id: e for e in Event.select()})
    found = []
    for node, seen in feeds.items():
        try:
            await wait_for(lambda s=seen: set(events) <= set(s), timeout_s, f"{node}'s feed")
        except AssertionError:
            pass
        missing = sorted(set(events) - set(seen))
        by_job: dict[int | None, list[str]] = defaultdict(list)
        for event_id in missing:
            by_job[events[event_id].job_id].append(f"{event_id} {events[event_id].kind}")
        found += [f"{node}: job {job}: missing {', '.join(kinds)}" for job, kinds in by_job.items()]
    return found
