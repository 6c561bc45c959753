"""Web nodes in the test's trio run: each a web process's app for its own
settings (its own home, often the same board), on a loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import trio

from crewboard.config import Config


@asynccontextmanager
async def web_node(config: Config) -> AsyncIterator[str]:
    """The web app for ``config`` serving for the block; yields its URL."""
    from crewboard.web.server import serve_web

    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(serve_web, config, shutdown=stop))
        try:
            yield binds[0]
        finally:
            stop.set()
