"""The shipped systemd units agree with the supervisor's and the web's
timings and settings, so a sysadmin who installs them as they are gets a
service that drains cleanly and is not killed by its own watchdog."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

from crewboard.board.heartbeats import STALE_AFTER_INTERVALS
from crewboard.config import Config

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"


def unit(name: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None, comment_prefixes="#")
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((UNITS / name).read_text())
    return parser["Service"]


@pytest.mark.parametrize("name", ["crewboard-supervisor.service", "crewboard-web.service"])
def test_each_unit_notifies_runs_as_its_user_and_may_write_only_the_home(name: str) -> None:
    service = unit(name)
    assert service["Type"] == "notify"
    assert service["User"] == "crewboard"
    home = dict(line.split("=", 1) for line in [service["Environment"]])["CREWBOARD_HOME"]
    assert service["ReadWritePaths"] == home
    assert service["ProtectSystem"] == "strict"
    assert service["NoNewPrivileges"] == "yes" and service["PrivateTmp"] == "yes"
    assert service["KillMode"] == "mixed"  # SIGTERM to the service; it stops its own runners


def test_the_supervisor_unit_leaves_room_to_drain_and_beats_its_watchdog() -> None:
    service = unit("crewboard-supervisor.service")
    defaults = Config()
    assert service["ExecStart"].endswith("crewboard supervisor")
    assert float(service["TimeoutStopSec"]) > defaults.drain_s + defaults.grace_s + 5
    # The watchdog fires only well after a heartbeat would be seen as stale.
    assert float(service["WatchdogSec"]) >= 3 * STALE_AFTER_INTERVALS * defaults.heartbeat_s
