"""The catalog of presets and templates: every way an operator changes a file
shows at the next look, whether inotify tells of it or a scan finds it, and
a look at unchanged files parses nothing again."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from crewboard.catalog import Catalog
from crewboard.config import Config
from tests.support.procs import inotify_instances

PRESET = "name: {name}\ndescription: Helps.\ninstructions: Help well.\n"
TEMPLATE = "name: {name}\njobs:\n  only:\n    prompt: Hello.\n"


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    agents, workflows = tmp_path / "agents", tmp_path / "workflows"
    agents.mkdir()
    workflows.mkdir()
    return agents, workflows


def catalog_of(tmp_path: Path, agents: Path, workflows: Path) -> Catalog:
    config = dataclasses.replace(
        Config.load(tmp_path / "home", environ={}), agents=(agents,), workflows=(workflows,)
    )
    return Catalog(config)


def preset_name(catalog: Catalog, preset_id: str) -> str | None:
    preset = catalog.load().presets.get(preset_id)
    return preset.name if preset is not None else None


def test_an_unchanged_catalog_is_not_parsed_again(tmp_path: Path, folders) -> None:
    agents, workflows = folders
    (agents / "helper.agent.yaml").write_text(PRESET.format(name="Helper"))
    catalog = catalog_of(tmp_path, agents, workflows)
    first = catalog.load()
    assert catalog.load() is first


def test_each_way_of_changing_a_file_shows_at_the_next_look(tmp_path: Path, folders) -> None:
    agents, workflows = folders
    catalog = catalog_of(tmp_path, agents, workflows)
    assert preset_name(catalog, "helper") is None
    path = agents / "helper.agent.yaml"
    # Created…
    path.write_text(PRESET.format(name="One"))
    assert preset_name(catalog, "helper") == "One"
    # …edited in place, to the same size…
    with open(path, "r+") as f:
        f.write(PRESET.format(name="Two"))
    assert preset_name(catalog, "helper") == "Two"
    # …replaced by a rename, as editors and deploy tools do…
    staged = agents / ".helper.tmp"
    staged.write_text(PRESET.format(name="Three"))
    os.replace(staged, path)
    assert preset_name(catalog, "helper") == "Three"
    # …and removed.
    path.unlink()
    assert preset_name(catalog, "helper") is None
    # A template, in its own folder.
    (workflows / "fresh.job_workflow.yaml").write_text(TEMPLATE.format(name="Fresh"))
    assert catalog.load().templates["fresh"].name == "Fresh"


def test_a_preset_linked_from_elsewhere_is_seen_when_its_target_changes(
    tmp_path: Path, folders
) -> None:
    agents, workflows = folders
    elsewhere = tmp_path / "managed"
    elsewhere.mkdir()
    target = elsewhere / "helper.agent.yaml"
    target.write_text(PRESET.format(name="Before"))
    (agents / "helper.agent.yaml").symlink_to(target)
    catalog = catalog_of(tmp_path, agents, workflows)
    assert preset_name(catalog, "helper") == "Before"
    target.write_text(PRESET.format(name="After, and longer"))
    assert preset_name(catalog, "helper") == "After, and longer"


def test_a_folder_made_after_the_start_is_read_once_it_exists(tmp_path: Path, folders) -> None:
    _, workflows = folders
    agents = tmp_path / "later"
    catalog = catalog_of(tmp_path, agents, workflows)
    assert preset_name(catalog, "helper") is None
    agents.mkdir()
    (agents / "helper.agent.yaml").write_text(PRESET.format(name="Late"))
    assert preset_name(catalog, "helper") == "Late"
    # Watched from then on.
    (agents / "helper.agent.yaml").write_text(PRESET.format(name="Later"))
    assert preset_name(catalog, "helper") == "Later"


def test_a_folder_replaced_whole_is_read_again(tmp_path: Path, folders) -> None:
    agents, workflows = folders
    (agents / "helper.agent.yaml").write_text(PRESET.format(name="Old"))
    catalog = catalog_of(tmp_path, agents, workflows)
    assert preset_name(catalog, "helper") == "Old"
    fresh = tmp_path / "agents.new"
    fresh.mkdir()
    (fresh / "helper.agent.yaml").write_text(PRESET.format(name="New"))
    agents.rename(tmp_path / "agents.old")
    fresh.rename(agents)
    assert preset_name(catalog, "helper") == "New"
    (agents / "helper.agent.yaml").write_text(PRESET.format(name="Newer"))
    assert preset_name(catalog, "helper") == "Newer"


def test_a_closed_catalog_gives_its_inotify_instance_back_and_still_sees_changes(
    tmp_path: Path, folders
) -> None:
    agents, workflows = folders
    before = inotify_instances()
    catalog = catalog_of(tmp_path, agents, workflows)
    assert preset_name(catalog, "helper") is None
    catalog.close()
    assert inotify_instances() == before
    (agents / "helper.agent.yaml").write_text(PRESET.format(name="After"))
    assert preset_name(catalog, "helper") == "After"
    assert inotify_instances() == before
