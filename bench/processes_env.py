"""The environment a benchmark starts crewboard processes with."""

from __future__ import annotations

import os
from pathlib import Path


def crewboard_env(home: Path, **settings: str) -> dict[str, str]:
    """This process's environment without the caller's ``CREWBOARD_*``
    settings, plus ``settings``; the configuration folder
    (``$XDG_CONFIG_HOME``) is one beside ``home``, so a benchmark's first
    start never records its throwaway home as the user's default."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CREWBOARD_")}
    env.update(settings, XDG_CONFIG_HOME=str(Path(home).parent / "xdg-config"))
    return env
