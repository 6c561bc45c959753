"""The shipped systemd units agree with the supervisor's and the web's
timings and settings, so a sysadmin who installs them as they are gets a
service that drains cleanly and is not killed by its own watchdog."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

from crewboard import localmodel
from crewboard.board.heartbeats import STALE_AFTER_INTERVALS
from crewboard.config import Config

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"


# One machine: the supervisor and the web beside a local model.
SERVICES = [
    "crewboard-supervisor.service",
    "crewboard-web.service",
    "crewboard-local-model.service",
]
# More than one machine: supervisor-only and web-only nodes on a shared board.
NODE_SERVICES = ["crewboard-supervisor-node.service", "crewboard-web-node.service"]
SUPERVISORS = ["crewboard-supervisor.service", "crewboard-supervisor-node.service"]
WEBS = ["crewboard-web.service", "crewboard-web-node.service"]


def unit(name: str, section: str = "Service") -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None, comment_prefixes="#")
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((UNITS / name).read_text())
    return parser[section]


def environment(name: str) -> dict[str, str]:
    """Every ``Environment=`` line of the unit, as one mapping (a parser of
    sections would keep only the last line)."""
    lines = (UNITS / name).read_text().splitlines()
    pairs = [line.removeprefix("Environment=") for line in lines if line.startswith("Environment=")]
    return dict(pair.split("=", 1) for pair in pairs)


def test_every_shipped_unit_is_checked_here() -> None:
    assert sorted(p.name for p in UNITS.glob("*.service")) == sorted(SERVICES + NODE_SERVICES)


@pytest.mark.parametrize("name", SERVICES + NODE_SERVICES)
def test_each_unit_notifies_runs_as_its_user_and_may_write_only_the_home(name: str) -> None:
    service = unit(name)
    assert service["Type"] == "notify"
    assert service["User"] == "crewboard"
    assert service["ReadWritePaths"] == environment(name)["CREWBOARD_HOME"]
    assert service["ProtectSystem"] == "strict"
    assert service["NoNewPrivileges"] == "yes" and service["PrivateTmp"] == "yes"
    assert service["KillMode"] == "mixed"  # SIGTERM to the service; it stops its own runners


@pytest.mark.parametrize("name", SUPERVISORS)
def test_the_supervisor_unit_leaves_room_to_drain_and_beats_its_watchdog(name: str) -> None:
    service = unit(name)
    defaults = Config()
    assert service["ExecStart"].endswith("crewboard supervisor")
    assert float(service["TimeoutStopSec"]) > defaults.drain_s + defaults.grace_s + 5
    # The watchdog fires only well after a heartbeat would be seen as stale.
    assert float(service["WatchdogSec"]) >= 3 * STALE_AFTER_INTERVALS * defaults.heartbeat_s


def test_the_units_share_one_home_and_one_environment_file() -> None:
    """The web and the supervisor find the local model's port in the same
    settings the model's own unit reads."""
    # A node's file is required ("-" makes it optional): its board's URL is there.
    assert {unit(name)["EnvironmentFile"] for name in NODE_SERVICES} == {
        unit(name)["EnvironmentFile"].removeprefix("-") for name in SERVICES
    }
    assert len({unit(name)["EnvironmentFile"] for name in SERVICES}) == 1
    assert len({environment(name)["CREWBOARD_HOME"] for name in SERVICES + NODE_SERVICES}) == 1


def test_the_local_model_unit_serves_the_configured_model_on_loopback_only() -> None:
    service = unit("crewboard-local-model.service")
    assert service["ExecStart"].endswith("crewboard local-model serve")
    assert service["Restart"] == "on-failure"
    # It stops within localmodel.STOP_WITHIN_S of SIGTERM; systemd waits longer.
    assert float(service["TimeoutStopSec"]) > localmodel.STOP_WITHIN_S + 1
    assert service["IPAddressDeny"] == "any" and service["IPAddressAllow"] == "localhost"
    assert localmodel.HOST == "127.0.0.1"


@pytest.mark.parametrize("name", ["crewboard-supervisor.service", "crewboard-web.service"])
def test_the_web_and_the_supervisor_start_after_the_local_model(name: str) -> None:
    assert "crewboard-local-model.service" in unit(name, "Unit")["After"].split()


@pytest.mark.parametrize("name", WEBS)
def test_the_web_unit_is_started_only_once_it_is_healthy(name: str) -> None:
    """``crewboard health`` asks the URL the web process leaves in the home,
    so the check follows CREWBOARD_HOST/PORT without repeating them."""
    from crewboard.cli import build_parser

    service = unit(name)
    command = service["ExecStartPost"].split()
    assert command[0] == service["ExecStart"].split()[0]
    args = build_parser().parse_args(command[1:])
    assert args.fn.__name__ == "cmd_health" and not args.ready
    assert 0 < args.wait < float(service.get("TimeoutStartSec", "90"))


def test_web_nodes_read_one_secret_key_file_through_a_credential() -> None:
    """Every web node signs cookies with the same key, handed to the service
    by systemd rather than read from a path the service user could widen."""
    service = unit("crewboard-web-node.service")
    credential, source = service["LoadCredential"].split(":", 1)
    assert source.startswith("/etc/crewboard/")
    key_file = environment("crewboard-web-node.service")["CREWBOARD_SECRET_KEY_FILE"]
    assert key_file == f"%d/{credential}"
