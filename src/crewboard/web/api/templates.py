"""``GET /api/templates``: the workflow templates users can start crews from,
valid or not (an invalid one says why).

Templates are loaded with the ids of the agent presets they may name, and
kept until a template or preset file changes: every request compares the
files' sizes and modification times (a few ``stat`` calls) with the last
load's and reloads when they differ.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import trio
from quart import Blueprint, jsonify

from crewboard.agents import SUFFIX as AGENT_SUFFIX
from crewboard.agents import load_presets, shipped_agents_dir
from crewboard.config import Config
from crewboard.web.auth.guards import login_required
from crewboard.web.state import state
from crewboard.workflows import SUFFIX as TEMPLATE_SUFFIX
from crewboard.workflows import Template, load_templates, template_dirs

log = logging.getLogger(__name__)

bp = Blueprint("templates", __name__, url_prefix="/api/templates")

Fingerprint = tuple[tuple[str, int, int], ...]


@dataclass(frozen=True)
class Catalog:
    fingerprint: Fingerprint
    templates: dict[str, Template]


def _agent_dirs(config: Config) -> list[Path]:
    return [shipped_agents_dir(), *config.agents]


def _fingerprint(config: Config) -> Fingerprint:
    seen: list[tuple[str, int, int]] = []
    for folders, suffix in (
        (template_dirs(config), TEMPLATE_SUFFIX),
        (_agent_dirs(config), AGENT_SUFFIX),
    ):
        for folder in folders:
            try:
                seen.append((str(folder), folder.stat().st_mtime_ns, 0))
                for path in sorted(folder.glob("*" + suffix)):
                    info = path.stat()
                    seen.append((str(path), info.st_mtime_ns, info.st_size))
            except OSError:
                seen.append((str(folder), -1, -1))
    return tuple(seen)


def _load(config: Config, known: Catalog | None) -> Catalog:
    fingerprint = _fingerprint(config)
    if known is not None and known.fingerprint == fingerprint:
        return known
    presets, errors = load_presets(config.agents)
    for error in errors:
        log.warning("agent preset left out: %s", error)
    templates = load_templates(template_dirs(config), set(presets))
    return Catalog(fingerprint, dict(sorted(templates.items())))


async def current_templates() -> dict[str, Template]:
    """Every template by id, reloaded if a template or preset file changed."""
    web = state()
    catalog = web.templates = await trio.to_thread.run_sync(_load, web.config, web.templates)
    return catalog.templates


@bp.get("")
@login_required
async def list_templates():
    templates = await current_templates()
    return jsonify([template.public() for template in templates.values()])
