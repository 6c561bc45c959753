"""The board's change feed: one poller of the events table shared by every
open ``GET /api/board/events`` stream, so clients stay live without polling
thousands of jobs.

The poller reads new events at each commit to the board (woken by
:class:`~crewboard.web.board_changes.BoardChanges`; every ``poll_s`` where
commits cannot be seen), joins each with its job as it is now, encodes the
frame once and publishes it to a bounded
:class:`~crewboard.web.broadcast.Broadcast`; each stream walks that buffer,
keeping what its viewer may see (scoped like the job list). A client resuming
with ``Last-Event-ID`` from before the buffer is served from the board first,
then joins the buffer: it misses nothing. Frames are numbered by the events'
feed positions (:func:`~crewboard.board.events.feed_position`), which follow
commit order, so a position once passed never gains an event below it.

The web process runs one feed (:func:`serve_board_feed`) from startup to
shutdown. It polls in rounds: a round starts with the first follower, takes
the newest feed position as its floor, and ends once no one follows, so an idle
server does not poll its board.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

import trio

from crewboard.board import db, job_views
from crewboard.board.users import Principal
from crewboard.web import sse
from crewboard.web.board_changes import BoardChanges
from crewboard.web.broadcast import Broadcast

log = logging.getLogger(__name__)

BATCH = 500
POLL_S = 0.25
# A board committing in a burst is read at most this often.
MIN_POLL_GAP_S = 0.005
# Events the buffer holds for streams that fall behind or resume.
KEEP = 5000


@dataclass(frozen=True)
class Change:
    id: int
    owner_id: int | None
    frame: bytes


def _changes_after(after: int, viewer: Principal | None = None, mine: bool = False) -> list[Change]:
    """Events after feed position ``after`` as encoded feed frames, each with
    its position as its id: all of them for the shared poller, or the ones
    ``viewer`` may see for a backfill."""
    if viewer is None:
        events = job_views.all_events_after(after, BATCH)
    else:
        events = job_views.events_after(viewer, after, BATCH, mine=mine)
    return [
        Change(
            change["position"],
            event.owner_id,
            sse.encode_frame("event", change, change["position"]),
        )
        for event, change in zip(events, job_views.board_changes(events), strict=True)
    ]


@dataclass(eq=False)
class _Round:
    """One stretch of polling, from its first follower until none is left."""

    changes: Broadcast[Change]
    # Set once the round's floor is read (or the round failed: changes closed).
    ready: trio.Event = field(default_factory=trio.Event)


class BoardFeed:
    """One poller of the events table shared by every open change feed."""

    def __init__(
        self, poll_s: float = POLL_S, keep: int = KEEP, changes: BoardChanges | None = None
    ) -> None:
        self.poll_s = poll_s
        self._changes = changes
        self.keep = keep
        self.followers = 0
        self._round: _Round | None = None
        self._wanted = trio.Event()  # a follower came while no round ran

    async def follow(
        self, viewer: Principal, after: int | None, mine: bool
    ) -> AsyncGenerator[list[bytes] | None, None]:
        """Frames of the events ``viewer`` may see after feed position
        ``after`` (or from now), live; None after :data:`~crewboard.web.sse.PING_S` without any."""
        self.followers += 1
        try:
            current = self._round
            if current is None:
                # Made here, with no await since counting ourselves, so the
                # poller cannot end the round for want of followers first.
                current = self._round = _Round(Broadcast(keep=self.keep))
                self._wanted.set()
            await current.ready.wait()
            changes = current.changes
            if after is None:
                # "From now" is the board's newest event, not the round's: a
                # round that has not polled lately would replay older ones.
                position = max(changes.last_id, await db.call(job_views.last_event_position))
            else:
                position = after
            everyone = viewer.is_admin and not mine
            while True:
                if position < changes.floor:
                    # Behind the buffer: read what was missed from the board.
                    rows = await db.call(_changes_after, position, viewer, mine)
                    frames = [row.frame for row in rows if row.id <= changes.floor]
                    position = rows[-1].id if len(rows) == BATCH else changes.floor
                    position = min(position, changes.floor)
                    if frames:
                        yield frames
                    continue
                new: list[Change] = changes.after(position)
                if new:
                    position = new[-1].id
                    frames = [c.frame for c in new if everyone or c.owner_id == viewer.user_id]
                    if frames:
                        yield frames
                    continue
                if changes.closed:
                    return
                with trio.move_on_after(sse.PING_S) as idle:
                    await changes.wait_after(position)
                if idle.cancelled_caught:
                    yield None
        finally:
            self.followers -= 1

    async def serve(self, *, task_status: trio.TaskStatus[BoardFeed]) -> None:
        """Poll a round whenever a follower wants one, until cancelled."""
        task_status.started(self)
        while True:
            await self._wanted.wait()
            self._wanted = trio.Event()
            current = self._round
            if current is None:
                continue
            try:
                await self._poll(current)
            except Exception:
                log.exception("the board feed poller failed; open feeds are ended")
            finally:
                if self._round is current:
                    self._round = None
                current.changes.close()
                current.ready.set()

    async def _poll(self, current: _Round) -> None:
        changes = current.changes
        changes.floor = await db.call(job_views.last_event_position)
        current.ready.set()
        while True:
            committed = self._changes.arm() if self._changes else None
            polled_at = trio.current_time()
            rows = await db.call(_changes_after, changes.last_id)
            if rows:
                changes.publish((row.id, row) for row in rows)
            if len(rows) < BATCH:
                if self._changes is None:
                    await trio.sleep(self.poll_s)
                else:
                    await self._changes.wait(committed, self.poll_s)
                    await trio.sleep_until(polled_at + MIN_POLL_GAP_S)
            if self.followers <= 0:
                return


async def serve_board_feed(
    *,
    poll_s: float | None = None,
    changes: BoardChanges | None = None,
    task_status: trio.TaskStatus[BoardFeed] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the feed, reported through ``task_status``, until cancelled;
    without ``changes`` (or where they cannot be seen) it polls every
    ``poll_s`` (:data:`POLL_S`)."""
    feed = BoardFeed(POLL_S if poll_s is None else poll_s, changes=changes)
    await feed.serve(task_status=task_status)
