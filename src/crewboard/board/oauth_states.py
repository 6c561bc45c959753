"""Sign-in flow states spent, kept in the board so that every web process
shares them: a state the provider sent back once is refused the second time,
on whichever node the replay lands.

The flow itself (its state, nonce and PKCE verifier) rides in the browser's
signed cookie; the board only remembers which states were used, until the
flow would have expired anyway. Keys are hashes: the table never holds a
state in clear.
"""

from __future__ import annotations

import hashlib

from crewboard.board.db import execute, write
from crewboard.board.models import OAuthSpentState


def _digest(flow_state: str) -> str:
    return hashlib.sha256(f"oauth-state:{flow_state}".encode("utf-8", "surrogatepass")).hexdigest()


@write
def spend_state(flow_state: str, *, forget_at: float, now: float) -> bool:
    """Mark ``flow_state`` used until ``forget_at`` (epoch seconds); False if
    it already was. States whose flows have expired are forgotten as we go."""
    OAuthSpentState.delete().where(OAuthSpentState.forget_at <= now).execute()
    cursor = execute(
        'INSERT INTO "oauth_spent_state" ("key", "forget_at") VALUES (?, ?) ON CONFLICT DO NOTHING',
        (_digest(flow_state), forget_at),
    )
    return bool(cursor.rowcount == 1)
