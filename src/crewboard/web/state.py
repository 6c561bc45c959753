"""What the web process holds for its lifetime, reachable from any route:
:class:`WebState`, made by ``create_app``, and the :class:`WebServices` it
starts when the app begins serving."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio
from quart import current_app

from crewboard.board.wake import woken_by
from crewboard.catalog import Catalog
from crewboard.config import Config
from crewboard.fswatch import FileWatch
from crewboard.home import Home
from crewboard.passwords import Passwords
from crewboard.wakeup import wake_supervisor
from crewboard.web.board_changes import BoardChanges

if TYPE_CHECKING:
    from crewboard.web.auth.google import ProviderCache
    from crewboard.web.board_feed import BoardFeed
    from crewboard.web.chat import ChatTurns
    from crewboard.web.job_stream import BoardWatch
    from crewboard.web.loghub import LogHub
    from crewboard.web.mcp import McpCatalog


@dataclass
class WebServices:
    """The services with tasks of their own: each is started with
    ``nursery.start`` when the app begins serving and stopped when it stops."""

    log_hub: LogHub
    board_feed: BoardFeed
    chat_turns: ChatTurns
    # The administrator's MCP servers and the tools each offers.
    mcp: McpCatalog
    # Cancels every service's tasks.
    cancel_scope: trio.CancelScope

    async def stop(self) -> None:
        """Stop every running chat turn (each is recorded as stopped) and
        their template, then every service."""
        await self.chat_turns.close()
        self.cancel_scope.cancel()


@dataclass
class WebState:
    config: Config
    home: Home
    passwords: Passwords
    # Changes of followed files (session logs, the board) seen by inotify.
    file_watch: FileWatch
    board_changes: BoardChanges
    # What job streams ask of the board, shared by all of them.
    board_watch: BoardWatch
    # The agent presets and workflow templates, re-read when their files change.
    catalog: Catalog
    # The Google provider's documents and key sets, and the spent sign-in states.
    google_oidc: ProviderCache
    running: WebServices | None = None

    @property
    def services(self) -> WebServices:
        """The running services; they exist only while the app is serving."""
        if self.running is None:
            raise RuntimeError("the web services run only while the app is serving")
        return self.running


def state() -> WebState:
    return current_app.extensions["crewboard"]


def wake_supervisor_after(write: Callable[..., Any]) -> None:
    """Once ``write`` (a board function that wakes the supervisors) has
    committed, nudge the parts of this home's supervisor it concerns."""
    wake_supervisor(state().home, *woken_by(write))
