"""``GET /api/board/events``: the board's change feed over SSE, so clients
stay live without polling thousands of jobs. The events come from the web
process's :class:`~crewboard.web.board_feed.BoardFeed`, scoped like the job
list; a client resumes with ``Last-Event-ID`` and misses nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing

from quart import Blueprint

from crewboard.board import db, job_views
from crewboard.web import sse
from crewboard.web.auth.guards import login_required, require_principal
from crewboard.web.params import flag
from crewboard.web.state import state

bp = Blueprint("board", __name__, url_prefix="/api/board")


@bp.get("/events")
@login_required
async def stream_events():
    viewer = require_principal()
    mine = flag("mine")
    after = sse.resume_id()
    if after is None:
        # "From now" is fixed before the response starts: a client that acts
        # as soon as the stream is open sees its own action's event.
        after = await db.call(job_views.last_event_position)
    feed = state().services.board_feed

    async def body() -> AsyncIterator[bytes]:
        frames = feed.follow(viewer, after, mine)
        async with aclosing(frames):
            async for batch in frames:
                yield sse.PING if batch is None else b"".join(batch)

    return sse.stream_response(body())
