"""Domain errors shared by every layer. The web layer maps them to HTTP
statuses at its seam (``web/errors.py``); the CLI prints their message."""

from __future__ import annotations

from typing import Any


class CrewboardError(Exception):
    """Base of every error the product raises on purpose."""


class ConfigError(CrewboardError):
    """The operator's configuration is wrong (a bad variable, toml or preset)."""


class NotFound(CrewboardError):
    """The caller named something that does not exist, or that is not theirs."""


class Conflict(CrewboardError):
    """The request is valid but the thing is in a state that forbids it
    (a job still running, a turn already in progress)."""


class ValidationFailed(CrewboardError):
    """The caller's input is well-formed but wrong; ``fields`` maps each bad
    field to what is wrong with it."""

    def __init__(self, message: str, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.fields = fields or {}

    @property
    def details(self) -> dict[str, Any]:
        return {"fields": self.fields} if self.fields else {}
