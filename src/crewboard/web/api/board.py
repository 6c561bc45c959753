"""``GET /api/board/events``: the board's change feed over SSE, so clients
stay live without polling thousands of jobs.

One :class:`BoardFeed` poller reads new events from the board every
``poll_s`` for every open feed, joins each with its job as it is now, encodes
the frame once and keeps recent frames in a buffer; each stream walks that
buffer, keeping what its viewer may see (scoped like the job list). A client
resuming with ``Last-Event-ID`` from before the buffer is served from the
board first, then joins the buffer: it misses nothing.
"""

from __future__ import annotations

import logging
from bisect import bisect_right
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import trio
from quart import Blueprint, current_app

from crewboard.board import db, job_views
from crewboard.board.users import Principal
from crewboard.web import sse
from crewboard.web.auth.guards import login_required, require_principal
from crewboard.web.params import flag
from crewboard.web.state import state

log = logging.getLogger(__name__)

bp = Blueprint("board", __name__, url_prefix="/api/board")

BATCH = 500


@dataclass(frozen=True)
class Change:
    id: int
    owner_id: int | None
    frame: bytes


def _changes_after(after_id: int, viewer: Principal | None = None, mine: bool = False):
    """Events after ``after_id`` as encoded feed frames: all of them for the
    shared poller, or the ones ``viewer`` may see for a backfill."""
    if viewer is None:
        events = job_views.all_events_after(after_id, BATCH)
    else:
        events = job_views.events_after(viewer, after_id, BATCH, mine=mine)
    return [
        Change(event.id, event.owner_id, sse.encode_frame("event", change, event.id))
        for event, change in zip(events, job_views.board_changes(events), strict=True)
    ]


class BoardFeed:
    """One poller of the events table shared by every open change feed; it
    runs while the feed has followers."""

    def __init__(self, nursery: trio.Nursery, poll_s: float = 0.25, keep: int = 5000) -> None:
        self.poll_s = poll_s
        self.keep = keep
        self.buffer: list[Change] = []
        self.ids: list[int] = []
        self.floor = 0  # events up to this id are on the board only, not in the buffer
        self.high = 0  # the newest event id read
        self.followers = 0
        self.started = trio.Event()
        self.stopped = False
        self.changed = trio.Event()
        nursery.start_soon(self._serve, name="board feed poller")

    async def follow(
        self, viewer: Principal, after_id: int | None, mine: bool
    ) -> AsyncIterator[list[bytes] | None]:
        """Frames of the events ``viewer`` may see after ``after_id`` (or
        from now), live; None after :data:`~crewboard.web.sse.PING_S` without any."""
        self.followers += 1
        try:
            await self.started.wait()
            position = self.high if after_id is None else after_id
            everyone = viewer.is_admin and not mine
            while True:
                if position < self.floor:
                    rows = await db.call(_changes_after, position, viewer, mine)
                    frames = [row.frame for row in rows if row.id <= self.floor]
                    position = rows[-1].id if len(rows) == BATCH else self.floor
                    position = min(position, self.floor)
                    if frames:
                        yield frames
                    continue
                start = bisect_right(self.ids, position)
                if start < len(self.buffer):
                    frames = [
                        c.frame
                        for c in self.buffer[start:]
                        if everyone or c.owner_id == viewer.user_id
                    ]
                    position = self.ids[-1]
                    if frames:
                        yield frames
                    continue
                if self.stopped:
                    return
                with trio.move_on_after(sse.PING_S) as idle:
                    await self.changed.wait()
                if idle.cancelled_caught:
                    yield None
        finally:
            self.followers -= 1

    async def _serve(self) -> None:
        try:
            self.high = self.floor = await db.call(job_views.last_event_id)
            self.started.set()
            while True:
                rows = await db.call(_changes_after, self.high)
                if rows:
                    self._publish(rows)
                if len(rows) < BATCH:
                    await trio.sleep(self.poll_s)
                if self.followers <= 0:
                    return
        except Exception:
            log.exception("the board feed poller failed; open feeds are ended")
        finally:
            self.stopped = True
            self.started.set()
            self._wake()

    def _publish(self, rows: list[Change]) -> None:
        self.buffer.extend(rows)
        self.ids.extend(row.id for row in rows)
        self.high = self.ids[-1]
        if len(self.buffer) > 2 * self.keep:
            drop = len(self.buffer) - self.keep
            self.floor = self.ids[drop - 1]
            del self.buffer[:drop], self.ids[:drop]
        self._wake()

    def _wake(self) -> None:
        woken, self.changed = self.changed, trio.Event()
        woken.set()


def board_feed(extras: dict[str, Any], nursery: trio.Nursery) -> BoardFeed:
    """The running feed, or a new one with its poller in ``nursery``.
    Call it and start following with no await in between, so the poller
    cannot stop for want of followers in the gap."""
    feed = extras.get("board_feed")
    if feed is None or feed.stopped:
        feed = extras["board_feed"] = BoardFeed(nursery)
    return feed


@bp.get("/events")
@login_required
async def stream_events():
    viewer = require_principal()
    mine = flag("mine")
    after_id = sse.resume_id()
    extras = state().extras
    nursery = current_app.nursery  # type: ignore[attr-defined]

    async def body() -> AsyncIterator[bytes]:
        frames = board_feed(extras, nursery).follow(viewer, after_id, mine)
        async with aclosing(frames):
            async for batch in frames:
                yield sse.PING if batch is None else b"".join(batch)

    return sse.stream_response(body())
