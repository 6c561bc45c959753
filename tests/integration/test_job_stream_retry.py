"""A job stream followed across a retry: a real supervisor runs a job on the
offline model, its first runner is killed (SIGKILL) and the job is retried,
and a client that reconnects with the last id it saw of the first run gets
that run's end, then the new run from its start."""

from __future__ import annotations

import os
import signal

import trio

from crewboard.board.models import RunOutcome
from tests.support import crews
from tests.support.board_jobs import assert_conforms, finish_run, log_writer, start_run
from tests.support.sse_client import collect, open_raw_stream
from tests.support.supervisor import supervising, wait_for


async def test_a_client_resuming_from_the_failed_run_gets_its_end_then_the_retry(
    server, as_admin, config
):
    # Each run sleeps before it answers: time to kill the first one mid-run.
    job_id = crews.add_job("/sleep 3\nThen answer.", retries=1)
    path = f"/api/jobs/{job_id}/stream"
    async with supervising(config):
        first = await wait_for(lambda: (crews.runs(job_id) or [None])[0], what="the first run")
        async with open_raw_stream(server, path, client=as_admin) as stream:
            (seen,) = await stream.take(1)
        assert seen.type == "user_message" and seen.id == f"{first.id}:1"

        pid = await wait_for(lambda: crews.runs(job_id)[0].pid, what="its pid")
        os.kill(pid, signal.SIGKILL)
        await wait_for(lambda: len(crews.runs(job_id)) == 2, what="the retry")

        headers = {"Last-Event-ID": seen.id}
        async with as_admin.stream("GET", path, headers=headers) as response:
            assert response.status_code == 200
            got = await collect(response, timeout_s=30)

    (first, second) = crews.runs(job_id)
    assert first.outcome == RunOutcome.CRASHED and second.outcome == RunOutcome.SUCCEEDED
    ends = [i for i, frame in enumerate(got) if frame.type == "done"]
    assert len(ends) == 2 and ends[-1] == len(got) - 1, [f.type for f in got]
    old, new = got[: ends[0] + 1], got[ends[0] + 1 :]

    # The first run's end: what followed the id, its terminal record, its done.
    assert all(frame.id.startswith(f"{first.id}:") for frame in old[:-1])
    assert old[-2].type == "error" and "SIGKILL" in old[-2].data["message"]
    assert old[-1].data == {"runId": first.id, "outcome": "crashed"}

    # Then the retry from its start.
    assert new[0].type == "user_message" and new[0].id == f"{second.id}:1"
    assert new[0].data["text"].startswith("/sleep 3\nThen answer.")
    assert [f.id for f in new[:-1]] == [f"{second.id}:{seq}" for seq in range(1, len(new))]
    assert new[-2].type == "final_result"
    assert new[-1].data == {"runId": second.id, "outcome": "succeeded"}
    for frame in got:
        assert_conforms({"type": frame.type, "data": frame.data}, "SseFrame")


async def test_an_id_of_another_jobs_run_starts_the_latest_run_over(server, as_admin, home):
    other = crews.add_job("other")
    job_id = crews.add_job("mine")
    other_run = start_run(other, home)
    run_id = start_run(job_id, home)
    for each in (other_run, run_id):
        with log_writer(home, each) as writer:
            writer.append("user_message", text="hi")
            writer.append("final_result", text="bye", agentName="assistant")
        finish_run(each)
    headers = {"Last-Event-ID": f"{other_run}:1"}
    with trio.fail_after(10):
        path = f"/api/jobs/{job_id}/stream"
        async with as_admin.stream("GET", path, headers=headers) as response:
            got = await collect(response, until="done")
    assert [f.id for f in got] == [f"{run_id}:1", f"{run_id}:2", None]
    assert got[-1].data == {"runId": run_id, "outcome": "succeeded"}
