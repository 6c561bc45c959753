"""What the web process holds for its lifetime, reachable from any route."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from quart import current_app

from crewboard.config import Config
from crewboard.home import Home
from crewboard.passwords import Passwords
from crewboard.web.auth.ratelimit import LoginLimiter


@dataclass
class WebState:
    config: Config
    home: Home
    passwords: Passwords
    login_limiter: LoginLimiter
    # Filled by later wiring (chat turns, log hub, caches); keyed by duty.
    extras: dict[str, Any] = field(default_factory=dict)


def state() -> WebState:
    return current_app.extensions["crewboard"]
