"""Helpers for the board, job, template and schedule browser tests: starting
crews over the API as the signed-in user of a context, waiting for a job's
status, and a context in a chosen time zone."""

from __future__ import annotations

from typing import Any

from tests.acceptance.browser.conftest import TIMEOUT_MS, Site, Watch
from tests.support.waits import wait_until


def start_crew(site: Site, context, template: str, inputs: dict[str, Any], **query: str) -> dict:
    """Start a crew as the context's user; returns ``{"crewId", "jobIds"}``."""
    response = context.request.post(
        "/api/jobs",
        data={"templateId": template, "inputs": inputs},
        params=query or None,
        headers={"Origin": site.origin},
    )
    assert response.status == 201, response.text()
    return response.json()


def job(context, job_id: int) -> dict:
    response = context.request.get(f"/api/jobs/{job_id}")
    assert response.ok, response.text()
    return response.json()


def wait_for_status(context, job_id: int, *statuses: str, timeout_s: float = 15) -> dict:
    """The job's detail once its status is one of ``statuses``."""

    def detail_once_there() -> dict | None:
        detail = job(context, job_id)
        return detail if detail["job"]["status"] in statuses else None

    wanted = f"job {job_id} to be {' or '.join(statuses)}"
    return wait_until(detail_once_there, timeout_s, wanted, every_s=0.1)


def zoned_context(browser, site: Site, watch: Watch, request, timezone_id: str, **options):
    """A watched context like the harness's ``context``, in ``timezone_id``;
    the caller closes it."""
    context = browser.new_context(
        base_url=site.url,
        service_workers="block",
        viewport=options.pop("viewport", {"width": 1280, "height": 800}),
        timezone_id=timezone_id,
        **options,
    )
    context.set_default_timeout(TIMEOUT_MS)
    context.on("request", watch.on_request)
    context.on("page", watch.watch)
    request.node.browser_context = context
    request.node.browser_watch = watch
    return context
