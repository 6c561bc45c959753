"""``/api/jobs``: the board's jobs — listing, starting crews from templates,
the job page (detail, graph, live stream, artifact, comments) and what people
may do to a job (unblock, redo, archive, cancel, delete, clear).

The list carries job summaries (previews of the long texts); a job's detail
carries them whole. Any signed-in user may list and create; a job's own routes answer 404 to
anyone but its owner and admins; clearing the board is for admins. After
writing intent the supervisor is woken, so it acts now rather than at its
next poll.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from urllib.parse import quote

import trio
from quart import Blueprint, Response, g, jsonify, request

from crewboard.board import artifacts as board_artifacts
from crewboard.board import db, job_views
from crewboard.board import jobs as board_jobs
from crewboard.board.models import Job, JobStatus
from crewboard.clock import parse_iso, utcnow
from crewboard.errors import NotFound, ValidationFailed
from crewboard.web import params, sse
from crewboard.web.api.templates import current_templates
from crewboard.web.api.webhooks import vet_webhook_url
from crewboard.web.auth.guards import (
    admin_required,
    check_owner,
    login_required,
    require_principal,
)
from crewboard.web.job_stream import stream_job
from crewboard.web.run_files import (
    HTML_CSP,
    MAX_RENDER_BYTES,
    RAW_CSP,
    Artifact,
    find_artifact,
    open_artifact,
    read_artifact,
    render_markdown_page,
)
from crewboard.web.state import state, wake_supervisor_after
from crewboard.web.validate import Fields, json_object
from crewboard.workflows import plan_crew, validate_inputs

bp = Blueprint("jobs", __name__, url_prefix="/api/jobs")

STATUSES = [s.value for s in JobStatus]
MAX_SCHEDULE_AHEAD = timedelta(days=366 * 10)
_CREW_FIELDS = ("templateId", "inputs", "title", "webhookUrl")
# A file kept in the board is sent a slice per query of this size.
BOARD_CHUNK_BYTES = 1 << 20


async def _owned_job(job_id: int) -> Job:
    """The job, if the caller owns it or is an admin; else 404."""
    job = await db.call(job_views.get_job, job_id)
    check_owner(job.owner_id, "job")
    return job


async def _remove_files(run_ids: list[int]) -> None:
    if run_ids:
        await trio.to_thread.run_sync(state().home.remove_run_files, run_ids)


# --- the list and new crews ---------------------------------------------------


@bp.get("")
@login_required
async def list_jobs():
    who = require_principal()
    status = params.choice("status", STATUSES)
    mine = params.flag("mine")
    limit = params.integer("limit", job_views.DEFAULT_PAGE, minimum=1, maximum=job_views.MAX_PAGE)
    cursor = params.text("cursor", max_length=200)
    q = _search_text()
    page, next_cursor = await db.call(job_views.list_jobs, who, status, mine, limit, cursor, q)
    jobs = [job_views.job_summary(job) for job in page]
    return jsonify({"jobs": jobs, "nextCursor": next_cursor})


MAX_SEARCH_CHARS = 200


def _search_text() -> str | None:
    """The board's search box (``q``): trimmed; empty (or absent) means no search."""
    q = (request.args.get("q") or "").strip()
    if len(q) > MAX_SEARCH_CHARS or not q.isprintable():
        message = f"must be at most {MAX_SEARCH_CHARS} printable characters"
        raise ValidationFailed(f"q {message}", {"q": message})
    return q or None


@bp.get("/counts")
@login_required
async def count_jobs():
    """The real total of each status column, for the board's headings."""
    who = require_principal()
    mine = params.flag("mine")
    counts = await db.call(job_views.count_jobs, who, mine, _search_text())
    return jsonify({"counts": counts})


def _scheduled_at() -> datetime | None:
    raw = request.args.get("scheduledAt")
    if raw is None:
        return None
    try:
        when = parse_iso(raw.strip())
    except ValueError as exc:
        if "must carry a UTC offset" in str(exc):
            message = "must carry a UTC offset, e.g. 2026-11-28T21:00:00Z"
        elif "years 1 to 9999" in str(exc):
            message = "must fall in years 1 to 9999 once converted to UTC"
        else:
            message = "must be an RFC 3339 time with an offset, e.g. 2026-11-28T21:00:00Z"
        raise ValidationFailed(f"scheduledAt {message}", {"scheduledAt": message}) from None
    now = utcnow()
    if when - now > MAX_SCHEDULE_AHEAD:
        message = "must be within ten years"
        raise ValidationFailed(f"scheduledAt {message}", {"scheduledAt": message})
    return when if when > now else None


def _input_fields(fields: dict[str, str]) -> dict[str, str]:
    """Template errors name inputs bare; the API names them ``inputs.<name>``."""
    return {k if k in _CREW_FIELDS else f"inputs.{k}": v for k, v in fields.items()}


@bp.post("")
@login_required
async def create_crew():
    who = require_principal()
    body = await json_object()
    fields = Fields(body, allowed=set(_CREW_FIELDS))
    template_id = fields.string("templateId", max_length=100)
    inputs = fields.obj("inputs")
    title = fields.string("title", required=False, max_length=300)
    webhook_url = body.get("webhookUrl")
    errors = dict(fields.errors)
    if webhook_url is not None:
        try:
            webhook_url = await vet_webhook_url(webhook_url)
        except ValidationFailed as exc:
            errors.update(exc.fields)
    try:
        scheduled_at = _scheduled_at()
    except ValidationFailed as exc:
        errors.update(exc.fields)
    template = (await current_templates()).get(template_id) if template_id else None
    plan = None
    if template_id and "templateId" not in errors and template is None:
        errors["templateId"] = "no such template"
    elif template is not None and inputs is not None:
        try:
            validate_inputs(template, inputs)
            if not errors:
                # Rendering runs user-sized templates: keep it off the event loop.
                plan = await trio.to_thread.run_sync(plan_crew, template, inputs, title)
        except ValidationFailed as exc:
            errors.update(_input_fields(exc.fields) or {"inputs": str(exc)})
    if errors or plan is None:
        limits = {key: limit for key, limit in fields.limits.items() if key in errors}
        raise ValidationFailed(
            "the crew cannot be created: some fields are invalid", errors, limits=limits
        )
    crew, jobs = await db.call(
        board_jobs.create_crew,
        plan,
        who.user_id,
        scheduled_at=scheduled_at,
        max_queued=state().config.queued_jobs_per_user,
        webhook_url=webhook_url,
        request_id=g.request_id,
        now=utcnow(),
    )
    wake_supervisor_after(board_jobs.create_crew)
    return jsonify({"crewId": crew.id, "jobIds": [job.id for job in jobs]}), 201


@bp.post("/clear")
@admin_required
async def clear_jobs():
    who = require_principal()
    status = params.choice("status", STATUSES)
    # Its one setting is a query parameter. A body such as {"status": "done"}
    # would otherwise be ignored and the whole board wiped: it is refused.
    body = await json_object(allow_empty=True)
    fields = Fields(body, allowed=set())
    if "status" in body:
        fields.errors["status"] = "goes in the query: POST /api/jobs/clear?status=done"
    fields.done()
    result = await db.call(board_jobs.clear, who.user_id, status, now=utcnow())
    await _remove_files(result["runIds"])
    return jsonify({"deleted": result["deleted"], "skipped": result["skipped"]})


# --- one job ------------------------------------------------------------------


@bp.get("/<id:job_id>")
@login_required
async def job_detail(job_id: int):
    job = await _owned_job(job_id)
    detail = await db.call(job_views.job_detail, job)
    # The detail carries whole results (up to a run's result cap each): encoded
    # on a worker thread, so a large one never stalls other requests.
    body = await trio.to_thread.run_sync(_json_bytes, detail)
    return Response(body, mimetype="application/json")


def _json_bytes(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


@bp.delete("/<id:job_id>")
@login_required
async def delete_job(job_id: int):
    who = require_principal()
    job = await _owned_job(job_id)
    cascade = params.flag("cascade")
    run_ids = await db.call(
        board_jobs.delete_job, job.id, who.user_id, cascade=cascade, now=utcnow()
    )
    await _remove_files(run_ids)
    return "", 204


@bp.get("/<id:job_id>/graph")
@login_required
async def job_graph(job_id: int):
    job = await _owned_job(job_id)
    return jsonify(await db.call(job_views.crew_graph, job))


@bp.get("/<id:job_id>/stream")
@login_required
async def job_stream(job_id: int):
    job = await _owned_job(job_id)
    web = state()
    body = stream_job(
        job.id,
        sse.resume_token(),
        home=web.home,
        hub=web.services.log_hub,
        watch=web.board_watch,
    )
    return sse.stream_response(body)


@bp.post("/<id:job_id>/comments")
@login_required
async def add_comment(job_id: int):
    who = require_principal()
    job = await _owned_job(job_id)
    body = await json_object()
    fields = Fields(body, allowed={"text"})
    text = fields.present("text")
    fields.done()
    comment = await db.call(board_jobs.add_comment, job.id, who.user_id, text, now=utcnow())
    return jsonify(job_views.comment_public(comment)), 201


@bp.post("/<id:job_id>/unblock")
@login_required
async def unblock_job(job_id: int):
    who = require_principal()
    job = await _owned_job(job_id)
    job = await db.call(
        board_jobs.unblock,
        job.id,
        who.user_id,
        max_queued=state().config.queued_jobs_per_user,
        now=utcnow(),
    )
    wake_supervisor_after(board_jobs.unblock)
    return jsonify(job_views.job_public(job))


@bp.post("/<id:job_id>/redo")
@login_required
async def redo_job(job_id: int):
    who = require_principal()
    job = await _owned_job(job_id)
    body = await json_object()
    fields = Fields(body, allowed={"feedback"})
    feedback = fields.present("feedback")
    fields.done()
    job = await db.call(
        board_jobs.redo,
        job.id,
        who.user_id,
        feedback,
        max_queued=state().config.queued_jobs_per_user,
        now=utcnow(),
    )
    wake_supervisor_after(board_jobs.redo)
    return jsonify(job_views.job_public(job))


@bp.post("/<id:job_id>/archive")
@login_required
async def archive_job(job_id: int):
    who = require_principal()
    job = await _owned_job(job_id)
    job = await db.call(board_jobs.archive, job.id, who.user_id, now=utcnow())
    return jsonify(job_views.job_public(job))


@bp.post("/<id:job_id>/unarchive")
@login_required
async def unarchive_job(job_id: int):
    who = require_principal()
    job = await _owned_job(job_id)
    job = await db.call(board_jobs.unarchive, job.id, who.user_id, now=utcnow())
    # A queued job restored is queued again.
    wake_supervisor_after(board_jobs.unarchive)
    return jsonify(job_views.job_public(job))


@bp.post("/<id:job_id>/cancel")
@login_required
async def cancel_job(job_id: int):
    who = require_principal()
    job = await _owned_job(job_id)
    job = await db.call(board_jobs.request_cancel, job.id, who.user_id, now=utcnow())
    wake_supervisor_after(board_jobs.request_cancel)
    return jsonify(job_views.job_public(job))


# --- the artifact -------------------------------------------------------------


def _disposition(kind: str, name: str) -> str:
    fallback = "".join(
        ch if ch.isascii() and ch not in '"\\' and ch.isprintable() else "_" for ch in name
    )
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


async def _file_chunks(artifact: Artifact, chunk_bytes: int = 64 * 1024) -> AsyncIterator[bytes]:
    fd = await trio.to_thread.run_sync(open_artifact, artifact)
    with open(fd, "rb", closefd=True) as f:
        while chunk := await trio.to_thread.run_sync(f.read, chunk_bytes):
            yield chunk


async def _board_chunks(
    artifact: Artifact, chunk_bytes: int = BOARD_CHUNK_BYTES
) -> AsyncIterator[bytes]:
    """A file kept in the board, a slice per query: a large one is never
    held whole in memory."""
    offset = 0
    while offset < artifact.size:
        chunk = await db.call(
            board_artifacts.read_slice, artifact.run_id, artifact.name, offset, chunk_bytes
        )
        if not chunk:
            return  # deleted while it was being sent: the body ends short
        offset += len(chunk)
        yield chunk


async def _read_head(artifact: Artifact, limit: int) -> bytes:
    if artifact.in_board:
        return await db.call(read_artifact, artifact, limit)
    return await trio.to_thread.run_sync(read_artifact, artifact, limit)


@bp.get("/<id:job_id>/artifact")
@login_required
async def job_artifact(job_id: int):
    job = await _owned_job(job_id)
    download = params.flag("download")
    as_html = params.choice("format", ["html"]) == "html"
    runs = await db.call(job_views.runs_newest_first, job.id)
    in_board = (
        await db.call(board_artifacts.stored_files, [run.id for run in runs])
        if board_artifacts.kept_in_board()
        else {}
    )
    artifact = await trio.to_thread.run_sync(
        find_artifact,
        state().home,
        [(run.id, run.artifact) for run in runs],
        job.artifact_name,
        in_board,
    )
    if artifact is None:
        raise NotFound("this job has no saved file yet")
    kind = "attachment" if download else "inline"
    if as_html:
        if not artifact.is_markdown:
            message = "only a Markdown file can be rendered as HTML"
            raise ValidationFailed(message, {"format": message})
        data = await _read_head(artifact, MAX_RENDER_BYTES)
        if len(data) > MAX_RENDER_BYTES:
            message = (
                f"the file is over {MAX_RENDER_BYTES // (1024 * 1024)} MiB; download it instead"
            )
            raise ValidationFailed(message, {"format": message})
        page = await trio.to_thread.run_sync(
            render_markdown_page, data.decode("utf-8", "replace"), artifact.name
        )
        response = Response(page, mimetype="text/html")
        # The job page shows this rendering in a sandboxed iframe: this site
        # may frame it, no other may.
        response.headers["Content-Security-Policy"] = f"{HTML_CSP}; frame-ancestors 'self'"
        response.headers["X-Frame-Options"] = "SAMEORIGIN"
        response.headers["Content-Disposition"] = _disposition(kind, artifact.name + ".html")
        return response
    chunks = _board_chunks(artifact) if artifact.in_board else _file_chunks(artifact)
    response = Response(chunks, content_type=artifact.media_type)
    response.headers["Content-Length"] = str(artifact.size)
    response.headers["Content-Security-Policy"] = RAW_CSP
    response.headers["Content-Disposition"] = _disposition(kind, artifact.name)
    return response
