"""Agent presets: the shipped ones load and are useful; a broken file is
reported by file and field and the others still load; later folders override."""

from __future__ import annotations

from pathlib import Path

from crewboard.agents import load_presets, run_agents, shipped_agents_dir
from crewboard.toolnames import TOOL_NAMES


def write(folder: Path, agent_id: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{agent_id}.agent.yaml"
    path.write_text(text)
    return path


GOOD = "name: Helper\ndescription: Helps.\ninstructions: Help well.\ntools: [read_file]\n"


def test_the_shipped_presets_load_cleanly() -> None:
    presets, errors = load_presets()
    assert errors == []
    assert {"assistant", "researcher", "writer", "coder", "triage"} <= set(presets)
    assert "http_get" in presets["researcher"].tools
    assert {"save_artifact", "write_file"} <= set(presets["writer"].tools)
    assert "shell" in presets["coder"].tools
    assert set(presets["triage"].handoffs) == {"researcher", "writer", "coder", "assistant"}
    for preset in presets.values():
        assert len(preset.instructions) > 200, f"{preset.id} has real instructions"
        assert set(preset.tools) <= set(TOOL_NAMES)
    assert shipped_agents_dir().is_dir()


def test_public_shape_for_the_api() -> None:
    presets, _ = load_presets()
    assert presets["triage"].public() == {
        "id": "triage",
        "name": "Triage",
        "description": presets["triage"].description,
        "model": None,
        "tools": ["block"],
        "handoffs": ["researcher", "writer", "coder", "assistant"],
        "mcp": [],
    }


def test_a_broken_file_names_file_and_field_and_others_still_load(tmp_path: Path) -> None:
    write(tmp_path, "ok", GOOD)
    bad_yaml = write(tmp_path, "yaml", "name: [unclosed\n")
    no_name = write(tmp_path, "noname", "instructions: x\n")
    bad_tool = write(tmp_path, "badtool", GOOD.replace("read_file", "launch_missiles"))
    typo = write(tmp_path, "typo", GOOD + "handofs: [ok]\n")
    bad_model = write(tmp_path, "badmodel", GOOD + "model: gpt-4o\n")
    presets, errors = load_presets([tmp_path], shipped=False)
    assert list(presets) == ["ok"]
    by_file = {e.path: e for e in errors}
    assert by_file[bad_yaml].field is None and "not valid YAML" in by_file[bad_yaml].message
    assert by_file[no_name].field == "name"
    assert by_file[bad_tool].field == "tools" and "launch_missiles" in by_file[bad_tool].message
    assert by_file[typo].field == "handofs" and "unknown field" in by_file[typo].message
    assert by_file[bad_model].field == "model"
    assert str(by_file[bad_tool]).startswith(f"{bad_tool}: tools: unknown tool")


def test_unknown_handoff_targets_break_the_preset_and_those_leading_to_it(tmp_path: Path) -> None:
    write(tmp_path, "front", GOOD + "handoffs: [middle]\n")
    write(tmp_path, "middle", GOOD + "handoffs: [ghost]\n")
    write(tmp_path, "self", GOOD + "handoffs: [self]\n")
    presets, errors = load_presets([tmp_path], shipped=False)
    assert presets == {}
    messages = {e.preset_id: e for e in errors}
    assert "'ghost'" in messages["middle"].message and messages["middle"].field == "handoffs"
    assert "'middle'" in messages["front"].message
    assert "itself" in messages["self"].message


def test_later_folders_override_by_id_but_a_broken_override_keeps_the_original(
    tmp_path: Path,
) -> None:
    write(tmp_path / "extra", "writer", GOOD.replace("Helper", "House Writer"))
    write(tmp_path / "broken", "assistant", "name: 3\n")
    presets, errors = load_presets([tmp_path / "extra", tmp_path / "broken", tmp_path / "missing"])
    assert presets["writer"].name == "House Writer"
    assert presets["assistant"].name == "Assistant"
    assert [e.preset_id for e in errors] == ["assistant"]


def test_run_agents_carries_every_preset_reachable_by_handoff(tmp_path: Path) -> None:
    presets, _ = load_presets()
    agents = run_agents(presets, "triage")
    assert set(agents) == {"triage", "researcher", "writer", "coder", "assistant"}
    assert agents["writer"]["instructions"] == presets["writer"].instructions
    assert set(run_agents(presets, "writer")) == {"writer"}


def test_odd_file_names_are_reported(tmp_path: Path) -> None:
    write(tmp_path, "has space", GOOD)
    presets, errors = load_presets([tmp_path], shipped=False)
    assert presets == {} and "file name" in errors[0].message


def test_a_preset_may_cap_its_answers_with_max_tokens(tmp_path: Path) -> None:
    write(tmp_path, "brief", GOOD + "max_tokens: 512\n")
    bad = write(tmp_path, "huge", GOOD + "max_tokens: -1\n")
    presets, errors = load_presets([tmp_path], shipped=False)
    assert presets["brief"].max_tokens == 512
    assert presets["brief"].runner_dict()["maxTokens"] == 512
    assert "maxTokens" not in presets["brief"].public()
    assert [(e.path, e.field) for e in errors] == [(bad, "max_tokens")]
