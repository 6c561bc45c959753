"""The /api/jobs routes through a live server: starting crews, the job list,
the job page (detail, graph, comments, artifact, live stream) and what people
may do to a job, with every route's auth rule. Runs are written straight to
the board and the run's log, as the supervisor and runner would: these tests
are about the web's side."""

from __future__ import annotations

import os
from datetime import timedelta
from html.parser import HTMLParser

import httpx
import pytest
import trio

from crewboard.board.models import Comment, Crew, Job, JobStatus, Run, RunOutcome
from crewboard.clock import iso, utcnow
from crewboard.home import Home
from crewboard.web import job_stream, sse
from tests.conftest import client_for, make_config, signed_in
from tests.support import crews
from tests.support.board_jobs import (
    assert_conforms,
    finish_run,
    job_row,
    log_writer,
    save_artifact,
    set_job,
    ship_log,
    start_run,
    write_templates,
)
from tests.support.crews import JobDef
from tests.support.sse_client import collect, open_raw_stream

# It opens boards outside the board fixtures (make_config, crewboard commands).
pytestmark = pytest.mark.board


@pytest.fixture
def config(tmp_path):
    return make_config(tmp_path / "home", workflows=(write_templates(tmp_path / "workflows"),))


async def create(client: httpx.AsyncClient, topic: str = "owls", **params: str) -> dict:
    response = await client.post(
        "/api/jobs", params=params, json={"templateId": "diamond", "inputs": {"topic": topic}}
    )
    assert response.status_code == 201, response.text
    return response.json()


async def ask(client: httpx.AsyncClient, question: str = "Why is the sky blue?") -> int:
    response = await client.post(
        "/api/jobs", json={"templateId": "ask", "inputs": {"question": question}}
    )
    assert response.status_code == 201, response.text
    return response.json()["jobIds"][0]


async def job(client: httpx.AsyncClient, job_id: int) -> dict:
    response = await client.get(f"/api/jobs/{job_id}")
    assert response.status_code == 200, response.text
    return response.json()["job"]


def board_counts() -> tuple[int, int, int]:
    return Crew.select().count(), Job.select().count(), Comment.select().count()


# --- starting crews -----------------------------------------------------------


async def test_a_crew_is_written_parents_first_with_roots_ready(as_alice, alice):
    created = await create(as_alice)
    a, b, c, d = created["jobIds"]
    assert created["jobIds"] == sorted(created["jobIds"])
    first = await job(as_alice, a)
    assert first["status"] == "ready" and first["title"] == "Gather owls"
    assert first["owner"] == {"id": alice.id, "email": alice.email}
    assert first["templateId"] == "diamond" and first["crewId"] == created["crewId"]
    assert first["maxRetries"] == 2 and first["timeoutS"] == 120
    assert [(await job(as_alice, i))["status"] for i in (b, c, d)] == ["waiting"] * 3
    last = await job(as_alice, d)
    assert last["artifactName"] == "brief.md" and last["prompt"] == "Write the brief."


async def test_bad_inputs_are_named_field_by_field_and_nothing_is_written(as_alice):
    before = board_counts()
    response = await as_alice.post(
        "/api/jobs",
        json={"templateId": "diamond", "inputs": {"words": 5, "colour": "red"}},
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_failed"
    assert set(error["details"]["fields"]) == {"inputs.topic", "inputs.words", "inputs.colour"}
    assert board_counts() == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"templateId": "nope", "inputs": {}}, "templateId"),
        ({"templateId": "broken", "inputs": {}}, "templateId"),
        ({"inputs": {"topic": "x"}}, "templateId"),
        ({"templateId": "diamond"}, "inputs"),
        ({"templateId": "diamond", "inputs": []}, "inputs"),
        ({"templateId": "diamond", "inputs": {"topic": "x"}, "extra": 1}, "extra"),
        ({"templateId": "diamond", "inputs": {"topic": "x"}, "title": 7}, "title"),
    ],
)
async def test_wrong_crews_are_422_on_the_field_at_fault(as_alice, body, field):
    before = board_counts()
    response = await as_alice.post("/api/jobs", json=body)
    assert response.status_code == 422, response.text
    assert field in response.json()["error"]["details"]["fields"]
    assert board_counts() == before


async def test_a_body_that_is_not_an_object_is_400(as_alice):
    response = await as_alice.post("/api/jobs", content=b"[1, 2]")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"


async def test_a_title_names_the_crew(as_alice):
    response = await as_alice.post(
        "/api/jobs",
        json={"templateId": "ask", "inputs": {"question": "q?"}, "title": "My question"},
    )
    assert response.status_code == 201
    assert (await job(as_alice, response.json()["jobIds"][0]))["title"] == "My question"


@pytest.mark.parametrize("when", ["2030-01-01T10:00:00", "tomorrow", "2030-13-01T00:00:00Z"])
async def test_scheduled_at_must_be_a_time_with_an_offset(as_alice, when):
    before = board_counts()
    response = await create_raw(as_alice, scheduledAt=when)
    assert response.status_code == 422
    assert "scheduledAt" in response.json()["error"]["details"]["fields"]
    assert board_counts() == before


async def create_raw(client: httpx.AsyncClient, **params: str) -> httpx.Response:
    return await client.post(
        "/api/jobs", params=params, json={"templateId": "diamond", "inputs": {"topic": "x"}}
    )


async def test_a_future_scheduled_at_holds_the_roots(as_alice):
    when = (utcnow() + timedelta(hours=2)).replace(microsecond=0)
    created = await create(as_alice, scheduledAt=when.isoformat())
    root = await job(as_alice, created["jobIds"][0])
    assert root["status"] == "waiting"
    assert root["scheduledAt"] == iso(when) and root["availableAt"] == iso(when)


async def test_a_past_scheduled_at_means_now(as_alice):
    created = await create(as_alice, scheduledAt="2001-01-01T00:00:00+02:00")
    root = await job(as_alice, created["jobIds"][0])
    assert root["status"] == "ready" and root["scheduledAt"] is None


# --- the list -----------------------------------------------------------------


async def ids_of(client: httpx.AsyncClient, **params: str) -> list[int]:
    response = await client.get("/api/jobs", params=params)
    assert response.status_code == 200, response.text
    return [j["id"] for j in response.json()["jobs"]]


async def test_the_list_is_scoped_to_the_caller_unless_admin(as_alice, as_bob, as_admin):
    alices = (await create(as_alice))["jobIds"]
    bobs = [await ask(as_bob)]
    admins = [await ask(as_admin)]
    assert await ids_of(as_alice) == sorted(alices, reverse=True)
    assert await ids_of(as_bob) == bobs
    assert await ids_of(as_bob, mine="false") == bobs
    assert await ids_of(as_admin) == sorted(alices + bobs + admins, reverse=True)
    assert await ids_of(as_admin, mine="true") == admins
    assert await ids_of(as_admin, mine="1") == admins


async def test_the_list_filters_by_status_and_hides_archived(as_alice):
    a, b, c, d = (await create(as_alice))["jobIds"]
    assert await ids_of(as_alice, status="ready") == [a]
    assert await ids_of(as_alice, status="waiting") == [d, c, b]
    assert (await as_alice.post(f"/api/jobs/{d}/archive")).status_code == 200
    assert d not in await ids_of(as_alice)
    assert await ids_of(as_alice, status="archived") == [d]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "finished"}, "status"),
        ({"mine": "perhaps"}, "mine"),
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "am9iczotMQ"}, "cursor"),
    ],
)
async def test_unreadable_list_parameters_are_422(as_alice, params, field):
    response = await as_alice.get("/api/jobs", params=params)
    assert response.status_code == 422
    assert field in response.json()["error"]["details"]["fields"]


async def test_the_cursor_walks_every_job_exactly_once(as_alice, as_bob):
    mine = []
    for n in range(120):
        mine.append(await ask(as_alice, f"question {n}"))
        if n % 10 == 0:
            await ask(as_bob, "noise")
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": "7"} | ({"cursor": cursor} if cursor else {})
        response = await as_alice.get("/api/jobs", params=params)
        body = response.json()
        assert len(body["jobs"]) <= 7
        seen.extend(j["id"] for j in body["jobs"])
        pages += 1
        cursor = body["nextCursor"]
        if cursor is None:
            break
    assert seen == sorted(mine, reverse=True)
    assert pages == 18  # 17 full pages and one of 1


async def test_jobs_added_while_paging_do_not_shift_pages(as_alice):
    first = [await ask(as_alice, f"q{n}") for n in range(5)]
    page = (await as_alice.get("/api/jobs", params={"limit": "2"})).json()
    await ask(as_alice, "newer")
    rest = await ids_of(as_alice, limit="10", cursor=page["nextCursor"])
    assert [j["id"] for j in page["jobs"]] + rest == sorted(first, reverse=True)


# 80 KB texts, each a different length, so previews and sizes can be told apart.
LONG_PROMPT = "Describe the owl. " * 4_500
LONG_RESULT = "The owl hoots at night. " * 3_400


async def test_a_page_of_large_jobs_carries_previews_and_sizes_not_texts(as_admin):
    jobs = {
        f"j{n}": JobDef(prompt=LONG_PROMPT, extra={"result": LONG_RESULT, "status": "done"})
        for n in range(50)
    }
    ids = crews.add_crew(jobs).values()
    response = await as_admin.get("/api/jobs", params={"limit": "50"})
    assert response.status_code == 200
    assert len(response.content) < 100_000, len(response.content)
    page = response.json()
    assert sorted(j["id"] for j in page["jobs"]) == sorted(ids)
    for summary in page["jobs"]:
        assert "prompt" not in summary and "result" not in summary
        assert summary["promptPreview"] == LONG_PROMPT[:300]
        assert summary["promptChars"] == len(LONG_PROMPT)
        assert summary["resultPreview"] == LONG_RESULT[:300]
        assert summary["resultChars"] == len(LONG_RESULT)
    assert_conforms(page, "JobPage")
    detail = await job(as_admin, page["jobs"][0]["id"])
    assert detail["prompt"] == LONG_PROMPT and detail["result"] == LONG_RESULT


async def test_a_job_without_a_result_lists_none(as_alice):
    job_id = await ask(as_alice, "Short?")
    (summary,) = (await as_alice.get("/api/jobs")).json()["jobs"]
    assert summary["id"] == job_id and summary["promptPreview"].startswith("Short?")
    assert summary["resultPreview"] is None and summary["resultChars"] == 0


# --- detail and graph ---------------------------------------------------------


async def test_detail_has_runs_events_comments_and_parent_results(as_alice, home):
    a, b, c, d = (await create(as_alice))["jobIds"]
    run_id = start_run(a, home)
    finish_run(run_id, result="owls hoot")
    set_job(b, status=JobStatus.DONE, result="b says")
    response = await as_alice.get(f"/api/jobs/{d}")
    detail = response.json()
    assert set(detail) == {"job", "runs", "events", "comments", "parentResults"}
    assert [(p["jobId"], p["result"]) for p in detail["parentResults"]] == [
        (b, "b says"),
        (c, None),
    ]
    first = (await as_alice.get(f"/api/jobs/{a}")).json()
    assert [r["id"] for r in first["runs"]] == [run_id]
    run = first["runs"][0]
    assert run["outcome"] == "succeeded" and run["jobId"] == a and run["attempt"] == 1
    assert first["job"]["result"] == "owls hoot"
    assert first["events"][0]["kind"] == "created"
    assert_conforms(first, "JobDetail")
    assert_conforms(detail, "JobDetail")


async def test_the_graph_is_the_whole_crew_in_dependency_order(as_alice):
    a, b, c, d = (await create(as_alice))["jobIds"]
    graph = (await as_alice.get(f"/api/jobs/{c}/graph")).json()
    assert graph["crewId"]
    order = [n["id"] for n in graph["nodes"]]
    assert order == [a, b, c, d]
    edges = {(e["from"], e["to"]) for e in graph["edges"]}
    assert edges == {(a, b), (a, c), (b, d), (c, d)}
    position = {node: i for i, node in enumerate(order)}
    assert all(position[p] < position[ch] for p, ch in edges)
    assert graph["nodes"][0] == {
        "id": a,
        "key": "a",
        "title": "Gather owls",
        "status": "ready",
        "agent": "assistant",
    }


# --- comments -----------------------------------------------------------------


HOSTILE = (
    '<script>alert("x")</script><img src=x onerror=alert(1)> ${7*7} {{ 7*7 }} \'; DROP TABLE job;--'
)


async def test_comments_are_stored_verbatim_and_returned_as_data(as_alice, alice):
    job_id = await ask(as_alice)
    response = await as_alice.post(f"/api/jobs/{job_id}/comments", json={"text": HOSTILE})
    assert response.status_code == 201
    assert response.headers["content-type"].startswith("application/json")
    comment = response.json()
    assert comment["text"] == HOSTILE
    assert comment["author"] == {"id": alice.id, "email": alice.email}
    assert comment["jobId"] == job_id
    detail = (await as_alice.get(f"/api/jobs/{job_id}")).json()
    assert [c["text"] for c in detail["comments"]] == [HOSTILE]
    assert detail["events"][-1]["kind"] == "comment"
    assert Job.select().count() == 1  # the SQL in it stayed text


@pytest.mark.parametrize(
    "body",
    [
        {"text": ""},
        {"text": "   \n "},
        {"text": "x" * 10_001},
        {"text": "bell\x07"},
        {"text": 42},
        {},
        {"text": "ok", "author": 1},
    ],
)
async def test_bad_comments_are_422_and_not_stored(as_alice, body):
    job_id = await ask(as_alice)
    response = await as_alice.post(f"/api/jobs/{job_id}/comments", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["details"]["fields"]
    assert Comment.select().count() == 0


async def test_a_comment_may_be_long_and_multiline(as_alice):
    job_id = await ask(as_alice)
    text = ("line\n\tindented " * 700)[:10_000]
    response = await as_alice.post(f"/api/jobs/{job_id}/comments", json={"text": text})
    assert response.status_code == 201 and response.json()["text"] == text


# --- unblock, redo, archive, cancel -------------------------------------------


async def test_unblock_sends_a_blocked_job_back_to_ready(as_alice, home):
    job_id = await ask(as_alice)
    run_id = start_run(job_id, home)
    finish_run(run_id, RunOutcome.FAILED)
    set_job(job_id, attempts=2)
    response = await as_alice.post(f"/api/jobs/{job_id}/unblock")
    assert response.status_code == 200
    unblocked = response.json()
    assert unblocked["status"] == "ready" and unblocked["blockedReason"] is None
    assert unblocked["attempts"] == 0
    again = await as_alice.post(f"/api/jobs/{job_id}/unblock")
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"


async def test_unblocking_a_job_whose_parents_are_not_done_makes_it_wait(as_alice):
    _, b, _, _ = (await create(as_alice))["jobIds"]
    assert (await as_alice.post(f"/api/jobs/{b}/cancel")).json()["status"] == "blocked"
    assert (await as_alice.post(f"/api/jobs/{b}/unblock")).json()["status"] == "waiting"


async def test_redo_requeues_with_feedback_and_rewinds_done_descendants(as_alice, home):
    a, b, c, d = (await create(as_alice))["jobIds"]
    for job_id in (a, b, c):
        finish_run(start_run(job_id, home), result=f"result {job_id}")
    set_job(b, status=JobStatus.DONE)
    assert (await job(as_alice, d))["status"] == "waiting"
    set_job(d, status=JobStatus.READY)
    response = await as_alice.post(f"/api/jobs/{a}/redo", json={"feedback": "More sources."})
    assert response.status_code == 200
    redone = response.json()
    assert redone["status"] == "ready" and redone["feedback"] == "More sources."
    assert [(await job(as_alice, i))["status"] for i in (b, c, d)] == ["waiting"] * 3
    kinds = [e["kind"] for e in (await as_alice.get(f"/api/jobs/{a}")).json()["events"]]
    assert kinds[-1] == "redo"


async def test_redo_is_refused_while_a_descendant_runs(as_alice, home):
    a, b, _, _ = (await create(as_alice))["jobIds"]
    finish_run(start_run(a, home))
    start_run(b, home)
    response = await as_alice.post(f"/api/jobs/{a}/redo", json={"feedback": "again"})
    assert response.status_code == 409
    assert (await job(as_alice, a))["status"] == "done"


@pytest.mark.parametrize("status", ["waiting", "ready", "running", "archived"])
async def test_only_done_or_blocked_jobs_can_be_redone(as_alice, status):
    job_id = await ask(as_alice)
    set_job(job_id, status=status)
    response = await as_alice.post(f"/api/jobs/{job_id}/redo", json={"feedback": "again"})
    assert response.status_code == 409


@pytest.mark.parametrize("body", [{}, {"feedback": ""}, {"feedback": "x" * 20_001}])
async def test_redo_needs_feedback(as_alice, home, body):
    job_id = await ask(as_alice)
    finish_run(start_run(job_id, home))
    response = await as_alice.post(f"/api/jobs/{job_id}/redo", json=body)
    assert response.status_code == 422
    assert "feedback" in response.json()["error"]["details"]["fields"]
    assert (await job(as_alice, job_id))["status"] == "done"


async def test_archive_soft_deletes_but_not_while_running(as_alice, home):
    job_id = await ask(as_alice)
    response = await as_alice.post(f"/api/jobs/{job_id}/archive")
    assert response.status_code == 200 and response.json()["status"] == "archived"
    assert (await as_alice.post(f"/api/jobs/{job_id}/archive")).status_code == 200
    assert (await job(as_alice, job_id))["status"] == "archived"
    running = await ask(as_alice)
    start_run(running, home)
    assert (await as_alice.post(f"/api/jobs/{running}/archive")).status_code == 409


async def test_cancel_takes_a_queued_job_off_the_queue(as_alice):
    a, b, _, _ = (await create(as_alice))["jobIds"]
    for job_id in (a, b):  # ready, then waiting
        response = await as_alice.post(f"/api/jobs/{job_id}/cancel")
        assert response.status_code == 200
        assert response.json()["status"] == "blocked"
        assert response.json()["blockedReason"] == "cancelled"
    assert (await as_alice.post(f"/api/jobs/{a}/cancel")).status_code == 409


async def test_cancel_asks_the_supervisor_to_stop_a_running_job(as_alice, home):
    job_id = await ask(as_alice)
    start_run(job_id, home)
    response = await as_alice.post(f"/api/jobs/{job_id}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "running" and response.json()["cancelRequested"]
    kinds = [e["kind"] for e in (await as_alice.get(f"/api/jobs/{job_id}")).json()["events"]]
    assert kinds[-1] == "cancel_requested"
    assert (await as_alice.post(f"/api/jobs/{job_id}/cancel")).status_code == 200


async def test_cancel_is_refused_for_finished_jobs(as_alice, home):
    job_id = await ask(as_alice)
    finish_run(start_run(job_id, home))
    assert (await as_alice.post(f"/api/jobs/{job_id}/cancel")).status_code == 409


async def test_each_job_lists_the_actions_it_allows_now(as_alice, home):
    job_id = await ask(as_alice)
    assert (await job(as_alice, job_id))["actions"] == ["cancel", "archive", "delete"]
    run_id = start_run(job_id, home)
    assert (await job(as_alice, job_id))["actions"] == ["cancel"]
    cancelling = (await as_alice.post(f"/api/jobs/{job_id}/cancel")).json()
    assert cancelling["actions"] == []  # its cancel is under way
    finish_run(run_id, RunOutcome.CANCELLED)
    blocked = await job(as_alice, job_id)
    assert blocked["actions"] == ["unblock", "redo", "archive", "delete"]
    done_id = await ask(as_alice)
    finish_run(start_run(done_id, home))
    assert (await job(as_alice, done_id))["actions"] == ["redo", "archive", "delete"]
    archived = (await as_alice.post(f"/api/jobs/{done_id}/archive")).json()
    assert archived["actions"] == ["unarchive", "delete"]
    listed = (await as_alice.get("/api/jobs", params={"status": "blocked"})).json()["jobs"]
    assert [j["actions"] for j in listed] == [blocked["actions"]]


async def test_intent_wakes_the_supervisor(as_alice, home):
    """A supervisor listening on the wake socket hears about new work, each
    wake-up naming the parts it is for."""
    import socket

    home.wake_socket.parent.mkdir(parents=True, exist_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(home.wake_socket))
        listener.setblocking(False)
        try:
            job_id = await ask(as_alice)
            await as_alice.post(f"/api/jobs/{job_id}/cancel")
            await as_alice.post(f"/api/jobs/{job_id}/unblock")
            heard = []
            while True:
                try:
                    heard.append(listener.recv(64))
                except BlockingIOError:
                    break
        finally:
            os.unlink(home.wake_socket)
    # Created, cancelled (its webhook may be due), requeued.
    assert heard == [b"jobs", b"jobs webhooks", b"jobs"]


# --- delete and clear ---------------------------------------------------------


async def test_delete_removes_the_job_its_runs_and_their_files(as_alice, home: Home):
    job_id = await ask(as_alice)
    run_id = start_run(job_id, home)
    with log_writer(home, run_id) as writer:
        writer.append("user_message", text="hi")
    save_artifact(home, run_id, "answer.md", "# hi")
    home.workspace(run_id).mkdir(parents=True)
    (home.workspace(run_id) / "scratch.txt").write_text("x")
    finish_run(run_id)
    await as_alice.post(f"/api/jobs/{job_id}/comments", json={"text": "bye"})
    response = await as_alice.delete(f"/api/jobs/{job_id}")
    assert response.status_code == 204
    assert (await as_alice.get(f"/api/jobs/{job_id}")).status_code == 404
    assert Run.select().count() == 0 and Comment.select().count() == 0
    assert Crew.select().count() == 0
    assert not home.run_log(run_id).exists()
    assert not home.artifact_dir(run_id).exists() and not home.workspace(run_id).exists()


async def test_delete_is_refused_while_running(as_alice, home):
    job_id = await ask(as_alice)
    start_run(job_id, home)
    assert (await as_alice.delete(f"/api/jobs/{job_id}")).status_code == 409
    assert job_row(job_id) is not None


async def test_delete_of_a_job_others_depend_on_needs_cascade(as_alice, home):
    a, b, c, d = (await create(as_alice))["jobIds"]
    refused = await as_alice.delete(f"/api/jobs/{b}")
    assert refused.status_code == 409 and "cascade" in refused.json()["error"]["message"]
    response = await as_alice.delete(f"/api/jobs/{b}", params={"cascade": "true"})
    assert response.status_code == 204
    assert [job_row(i) is not None for i in (a, b, c, d)] == [True, False, True, False]


async def test_delete_ignores_archived_dependents(as_alice):
    a, b, c, d = (await create(as_alice))["jobIds"]
    for job_id in (b, c, d):
        await as_alice.post(f"/api/jobs/{job_id}/archive")
    assert (await as_alice.delete(f"/api/jobs/{a}")).status_code == 204
    assert job_row(a) is None and job_row(d) is not None


async def test_cascade_is_refused_while_a_descendant_runs(as_alice, home):
    a, b, c, d = (await create(as_alice))["jobIds"]
    finish_run(start_run(a, home))
    start_run(c, home)
    response = await as_alice.delete(f"/api/jobs/{a}", params={"cascade": "1"})
    assert response.status_code == 409
    assert all(job_row(i) is not None for i in (a, b, c, d))


async def test_clear_is_for_admins(as_alice, anon):
    assert (await as_alice.post("/api/jobs/clear")).status_code == 403
    assert (await anon.post("/api/jobs/clear")).status_code == 401


async def test_clear_skips_running_jobs_and_what_they_need(as_alice, as_bob, as_admin, home):
    a, b, c, d = (await create(as_alice))["jobIds"]
    lone = await ask(as_bob)
    other = await ask(as_admin)
    finish_run(start_run(a, home))
    run_id = start_run(c, home)
    save_artifact(home, run_id, "x.md", "x")
    done_run = start_run(other, home)
    finish_run(done_run)
    save_artifact(home, done_run, "answer.md", "y")
    response = await as_admin.post("/api/jobs/clear")
    assert response.status_code == 200
    result = response.json()
    # a and c stay: c runs, and removing a would take c with it.
    assert result == {"deleted": sorted([b, d, lone, other]), "skipped": [a, c]}
    assert [job_row(i) is not None for i in (a, b, c, d, lone)] == [True, False, True, False, False]
    assert home.artifact_dir(run_id).exists() and not home.artifact_dir(done_run).exists()


async def test_clear_one_status_column(as_alice, as_admin):
    a, b, c, d = (await create(as_alice))["jobIds"]
    response = await as_admin.post("/api/jobs/clear", params={"status": "ready"})
    # a is ready; everything depends on it.
    assert response.json() == {"deleted": [a, b, c, d], "skipped": []}
    assert (await as_admin.post("/api/jobs/clear", params={"status": "nope"})).status_code == 422


async def test_clear_refuses_a_body_instead_of_wiping_the_whole_board(as_alice, as_admin):
    ids = (await create(as_alice))["jobIds"]
    # The status sent in the body, where it does not go: nothing is deleted.
    response = await as_admin.post("/api/jobs/clear", json={"status": "done"})
    assert response.status_code == 422
    assert "?status=" in response.json()["error"]["details"]["fields"]["status"]
    response = await as_admin.post(
        "/api/jobs/clear",
        content="status=done",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400
    assert all(job_row(i) is not None for i in ids)
    # An empty object says nothing more than no body.
    response = await as_admin.post("/api/jobs/clear", json={})
    assert response.json() == {"deleted": ids, "skipped": []}


# --- artifact -----------------------------------------------------------------


XSS = """# Brief

<script>alert('owned')</script>
<img src=x onerror="alert(1)">

[click](javascript:alert(2)) and [ok](https://example.org/)

| a | b |
|---|---|
| 1 | 2 |
"""


async def job_with_artifact(client, home, name="answer.md", content=XSS) -> tuple[int, int]:
    job_id = await ask(client)
    run_id = start_run(job_id, home, artifact=name)
    save_artifact(home, run_id, name, content)
    finish_run(run_id)
    return job_id, run_id


def parse_tags(page: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    class Collector(HTMLParser):
        def handle_starttag(self, tag, attrs):
            tags.append((tag, attrs))

    Collector().feed(page)
    return tags


async def test_the_artifact_is_served_as_markdown_inline(as_alice, home):
    job_id, _ = await job_with_artifact(as_alice, home)
    response = await as_alice.get(f"/api/jobs/{job_id}/artifact")
    assert response.status_code == 200
    assert response.text == XSS
    assert response.headers["content-type"].startswith("text/markdown")
    assert response.headers["content-disposition"].startswith("inline")
    assert "sandbox" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_download_makes_it_an_attachment(as_alice, home):
    job_id, _ = await job_with_artifact(as_alice, home, name="résumé.md")
    response = await as_alice.get(f"/api/jobs/{job_id}/artifact", params={"download": "1"})
    assert response.status_code == 200
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment;")
    assert "filename*=UTF-8''r%C3%A9sum%C3%A9.md" in disposition


async def test_html_is_rendered_sanitised_under_a_strict_csp(as_alice, home):
    job_id, _ = await job_with_artifact(as_alice, home)
    response = await as_alice.get(f"/api/jobs/{job_id}/artifact", params={"format": "html"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "sandbox" in csp and "script-src" not in csp
    tags = parse_tags(response.text)
    names = [name for name, _ in tags]
    assert "h1" in names and "table" in names and "script" not in names and "img" not in names
    attributes = [(key, value or "") for _, attrs in tags for key, value in attrs]
    assert not [key for key, _ in attributes if key.startswith("on")]
    assert ("href", "https://example.org/") in attributes
    assert not [v for _, v in attributes if "javascript:" in v.lower()]
    assert "&lt;script&gt;" in response.text  # shown as text, not run


async def test_only_markdown_renders_as_html(as_alice, home):
    job_id, _ = await job_with_artifact(as_alice, home, name="data.bin", content="\x00\x01")
    response = await as_alice.get(f"/api/jobs/{job_id}/artifact", params={"format": "html"})
    assert response.status_code == 422
    raw = await as_alice.get(f"/api/jobs/{job_id}/artifact")
    assert raw.headers["content-type"] == "application/octet-stream"
    assert raw.content == b"\x00\x01"


async def test_html_and_svg_artifacts_are_never_served_as_such(as_alice, home):
    job_id, _ = await job_with_artifact(
        as_alice, home, name="page.html", content="<script>1</script>"
    )
    response = await as_alice.get(f"/api/jobs/{job_id}/artifact")
    assert response.headers["content-type"] == "application/octet-stream"


async def test_no_artifact_is_404(as_alice, home):
    job_id = await ask(as_alice)
    assert (await as_alice.get(f"/api/jobs/{job_id}/artifact")).status_code == 404
    finish_run(start_run(job_id, home))
    assert (await as_alice.get(f"/api/jobs/{job_id}/artifact")).status_code == 404


async def test_the_newest_saved_file_wins_over_a_run_in_progress(as_alice, home):
    job_id, _ = await job_with_artifact(as_alice, home, content="first")
    start_run(job_id, home, artifact="answer.md")
    assert (await as_alice.get(f"/api/jobs/{job_id}/artifact")).text == "first"


@pytest.mark.parametrize("name", ["../../secret_key", "../1/answer.md", "/etc/passwd", ".."])
async def test_an_artifact_name_cannot_leave_the_run_folder(as_alice, home, name):
    job_id = await ask(as_alice)
    run_id = start_run(job_id, home, artifact=name)
    home.artifact_dir(run_id).mkdir(parents=True)
    set_job(job_id, artifact_name=name)
    finish_run(run_id)
    assert (await as_alice.get(f"/api/jobs/{job_id}/artifact")).status_code == 404


async def test_a_symlinked_artifact_is_not_followed(as_alice, home):
    job_id = await ask(as_alice)
    run_id = start_run(job_id, home, artifact="answer.md")
    folder = home.artifact_dir(run_id)
    folder.mkdir(parents=True)
    (folder / "answer.md").symlink_to(home.root / "secret_key")
    finish_run(run_id)
    assert (await as_alice.get(f"/api/jobs/{job_id}/artifact")).status_code == 404


# --- the live stream ----------------------------------------------------------


def write_run(home: Home, run_id: int, *, end: str = "final_result") -> None:
    with log_writer(home, run_id) as writer:
        writer.append("user_message", text="Why is the sky blue?")
        writer.append("agent_start", agentName="assistant")
        writer.append("text", agentName="assistant", text="Rayleigh ")
        writer.append("text", agentName="assistant", text="scattering.")
        writer.append("agent_end", agentName="assistant")
        if end == "final_result":
            writer.append("final_result", text="Rayleigh scattering.", agentName="assistant")
        elif end == "blocked":
            writer.append("blocked", reason="needs a person")
        elif end == "error":
            writer.append("error", message="the model went away")


async def test_the_stream_waits_for_a_run_and_ends_with_done(server, as_alice, home, monkeypatch):
    monkeypatch.setattr(sse, "PING_S", 0.2)
    job_id = await ask(as_alice)

    async def run_it() -> None:
        run_id = start_run(job_id, home)
        with log_writer(home, run_id) as writer:
            writer.append("user_message", text="Why is the sky blue?")
            await trio.sleep(0.1)
            writer.append("agent_start", agentName="assistant")
            writer.append("text", agentName="assistant", text="Rayleigh.")
            await trio.sleep(0.1)
            writer.append("final_result", text="Rayleigh.", agentName="assistant")
        await trio.sleep(0.3)
        finish_run(run_id, result="Rayleigh.")

    path = f"/api/jobs/{job_id}/stream"
    async with open_raw_stream(server, path, client=as_alice) as stream:
        assert stream.status == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        # It pings while it waits: the job has no run yet.
        assert await stream.frames_until_pings(1) == []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_it)
            got = await stream.take(6)  # one more than it has: it must end after done
    assert [f.type for f in got] == ["user_message", "chunk", "chunk", "final_result", "done"]
    run_id = Run.select().where(Run.job == job_id).get().id
    assert [f.id for f in got] == [f"{run_id}:{seq}" for seq in (1, 2, 3, 4)] + [None]
    assert got[0].data["text"] == "Why is the sky blue?"
    assert got[2].data == {**got[2].data, "type": "text", "text": "Rayleigh."}
    assert got[-1].data == {"runId": run_id, "outcome": "succeeded"}
    for frame in got:
        assert_conforms({"type": frame.type, "data": frame.data}, "SseFrame")


async def test_last_event_id_resumes_after_that_record(as_alice, home):
    job_id = await ask(as_alice)
    run_id = start_run(job_id, home)
    write_run(home, run_id)
    finish_run(run_id)
    for last_id in (f"{run_id}:3", "3"):  # a plain seq, from older clients, is of the latest run
        headers = {"Last-Event-ID": last_id}
        path = f"/api/jobs/{job_id}/stream"
        async with as_alice.stream("GET", path, headers=headers) as response:
            got = await collect(response, until="done")
        assert [f.id for f in got] == [f"{run_id}:{seq}" for seq in (4, 5, 6)] + [None]
        assert [f.type for f in got] == ["chunk", "chunk", "final_result", "done"]
    for last_id in (f"{run_id}:6", "6"):
        headers = {"Last-Event-ID": last_id}
        path = f"/api/jobs/{job_id}/stream"
        async with as_alice.stream("GET", path, headers=headers) as response:
            assert [f.type for f in await collect(response, until="done")] == ["done"]


@pytest.mark.parametrize(
    ("end", "outcome", "last"),
    [("blocked", RunOutcome.BLOCKED, "chunk"), ("error", RunOutcome.FAILED, "error")],
)
async def test_blocked_and_failed_runs(as_alice, home, end, outcome, last):
    job_id = await ask(as_alice)
    run_id = start_run(job_id, home)
    write_run(home, run_id, end=end)
    finish_run(run_id, outcome)
    async with as_alice.stream("GET", f"/api/jobs/{job_id}/stream") as response:
        got = await collect(response, until="done")
    assert [f.type for f in got[-2:]] == [last, "done"]
    assert got[-1].data["outcome"] == outcome
    for frame in got:
        assert_conforms({"type": frame.type, "data": frame.data}, "SseFrame")


async def test_a_run_that_died_without_a_terminal_record_still_ends(as_alice, home, monkeypatch):
    monkeypatch.setattr(job_stream, "IDLE_S", 0.5)
    job_id = await ask(as_alice)
    run_id = start_run(job_id, home)
    with log_writer(home, run_id) as writer:
        writer.append("user_message", text="hi")
    finish_run(run_id, RunOutcome.CRASHED)
    async with as_alice.stream("GET", f"/api/jobs/{job_id}/stream") as response:
        got = await collect(response, until="done", timeout_s=10)
    assert [f.type for f in got] == ["user_message", "done"]
    assert got[-1].data["outcome"] == "crashed"


async def test_a_client_going_away_leaves_the_job_alone(server, as_alice, home):
    job_id = await ask(as_alice)
    run_id = start_run(job_id, home)
    path = f"/api/jobs/{job_id}/stream"
    with log_writer(home, run_id) as writer:
        writer.append("user_message", text="hi")
        ship_log(home.run_log(run_id))  # as the launcher does on PostgreSQL
        for _ in range(3):
            async with open_raw_stream(server, path, client=as_alice) as stream:
                assert stream.status == 200
                assert [f.type for f in await stream.take(1)] == ["user_message"]
        async with open_raw_stream(server, path, client=as_alice) as stream:
            # Served after the three went away: the job and its run are untouched.
            assert [f.type for f in await stream.take(1)] == ["user_message"]
            assert job_row(job_id).status == JobStatus.RUNNING
            assert Run.get_by_id(run_id).outcome == RunOutcome.RUNNING
            writer.append("final_result", text="bye", agentName="assistant")
            ship_log(home.run_log(run_id))
            finish_run(run_id)
            got = await stream.take(3)
            assert [f.type for f in got] == ["final_result", "done"]
            assert got[-1].data["outcome"] == "succeeded"


async def test_idle_streams_are_pinged(server, as_alice, monkeypatch):
    monkeypatch.setattr(sse, "PING_S", 0.3)
    job_id = await ask(as_alice)
    async with open_raw_stream(server, f"/api/jobs/{job_id}/stream", client=as_alice) as stream:
        assert await stream.frames_until_pings(2) == []
    assert set(stream.pings) == {": ping"}


# --- who may do what ----------------------------------------------------------


JOB_ROUTES = [
    ("GET", "", None, None, 200),
    ("GET", "/graph", None, None, 200),
    ("GET", "/stream", None, None, 200),
    ("GET", "/artifact", None, "artifact", 200),
    ("POST", "/comments", {"text": "hello"}, None, 201),
    ("POST", "/unblock", None, "blocked", 200),
    ("POST", "/redo", {"feedback": "again"}, "blocked", 200),
    ("POST", "/archive", None, None, 200),
    ("POST", "/cancel", None, None, 200),
    ("DELETE", "", None, None, 204),
]


@pytest.mark.parametrize(("method", "suffix", "body", "setup", "ok"), JOB_ROUTES)
@pytest.mark.parametrize("role", ["owner", "other", "admin", "anonymous"])
async def test_job_routes_are_for_the_owner_and_admins(
    server, alice, bob, admin, home, method, suffix, body, setup, ok, role
):
    async with signed_in(server, alice) as owner:
        job_id = await ask(owner)
    if setup == "blocked":
        set_job(job_id, status=JobStatus.BLOCKED, blocked_reason="stuck")
    elif setup == "artifact":
        run_id = start_run(job_id, home, artifact="answer.md")
        save_artifact(home, run_id, "answer.md", "# hi")
        finish_run(run_id)
    account = {"owner": alice, "other": bob, "admin": admin}.get(role)
    expected = {"owner": ok, "admin": ok, "other": 404, "anonymous": 401}[role]
    url = f"/api/jobs/{job_id}{suffix}"
    kwargs = {"json": body} if body is not None else {}
    caller = signed_in(server, account) if account else client_for(server)
    async with caller as client, client.stream(method, url, **kwargs) as response:
        status = response.status_code
        if status >= 400:
            await response.aread()
            assert response.json()["error"]["code"] in ("not_found", "unauthorized")
    assert status == expected
    if expected >= 400:
        assert job_row(job_id) is not None  # nothing happened to it


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/jobs", None),
        ("POST", "/api/jobs", {"templateId": "ask", "inputs": {"question": "q"}}),
        ("POST", "/api/jobs/clear", None),
        ("GET", "/api/board/events", None),
        ("GET", "/api/templates", None),
        ("GET", "/api/dispatcher/status", None),
    ],
)
async def test_board_routes_need_a_login(anon, method, path, body):
    response = await anon.request(method, path, json=body)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert Job.select().count() == 0


async def test_a_missing_job_is_404_even_for_admins(as_admin):
    for method, suffix in [("GET", ""), ("GET", "/graph"), ("POST", "/cancel"), ("DELETE", "")]:
        response = await as_admin.request(method, f"/api/jobs/999999{suffix}")
        assert response.status_code == 404
