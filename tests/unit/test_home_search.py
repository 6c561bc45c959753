"""How a command finds its home: named, found by walking up, recorded by
the first start; and a record survives odd folder names."""

from __future__ import annotations

from pathlib import Path

from crewboard.home import Home, locate_home, record_home, recorded_home


def make_home(path: Path) -> Path:
    Home(path).ensure().secret_key()
    return path


def test_the_order_is_flag_env_walk_up_record_default(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    project = make_home(tmp_path / "project" / ".crewboard").parent
    deep = project / "a" / "b"
    deep.mkdir(parents=True)
    assert locate_home(None, env, deep).how == "found"
    assert locate_home(None, env, deep).path == project / ".crewboard"
    assert locate_home(None, {**env, "CREWBOARD_HOME": "/x"}, deep).how == "env"
    assert locate_home("/y", {**env, "CREWBOARD_HOME": "/x"}, deep).path == Path("/y")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert locate_home(None, env, elsewhere).how == "default"
    record_home(project / ".crewboard", env)
    assert locate_home(None, env, elsewhere).how == "recorded"
    assert locate_home(None, env, elsewhere, use_record=False).how == "default"


def test_a_record_is_kept_while_its_home_lives_and_reads_back_odd_names(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    odd = make_home(tmp_path / 'we"ird \\ näme\tx')
    assert record_home(odd, env) is not None
    assert recorded_home(env) == odd
    assert record_home(make_home(tmp_path / "second"), env) is None, "the first is kept"
    assert recorded_home(env) == odd


def test_an_empty_folder_named_crewboard_is_not_a_home(tmp_path: Path) -> None:
    (tmp_path / ".crewboard").mkdir()
    found = locate_home(None, {"XDG_CONFIG_HOME": str(tmp_path / "c")}, tmp_path)
    assert found.how == "default"
    assert "records no home" in found.missing()
