"""The per-user limits as settings and as checks: each is read like any other
setting (environment over ``crewboard.toml`` over the default), 0 turns it
off, and a refusal names the limit and the numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from crewboard import limits
from crewboard.config import Config
from crewboard.errors import ConfigError, TooManyRequests


def test_every_limit_is_a_setting_with_its_documented_default(tmp_path: Path):
    config = Config.load(tmp_path, environ={})
    assert limits.configured(config) == {
        "chatTurns": 2,
        "chatTurnSeconds": 900.0,
        "schedules": 100,
        "queuedJobs": 1000,
        "sessions": 1000,
    }
    for limit in limits.LIMITS:
        assert getattr(config, limit.field) == limit.default


def test_limits_come_from_the_toml_and_the_environment_wins(tmp_path: Path):
    (tmp_path / "crewboard.toml").write_text(
        "CREWBOARD_SCHEDULES_PER_USER = 7\nCREWBOARD_CHAT_TURN_TIMEOUT_S = 30\n"
    )
    config = Config.load(tmp_path, environ={"CREWBOARD_SCHEDULES_PER_USER": "9"})
    assert config.schedules_per_user == 9 and config.chat_turn_timeout_s == 30.0
    with pytest.raises(ConfigError, match="CREWBOARD_QUEUED_JOBS_PER_USER"):
        Config.load(tmp_path, environ={"CREWBOARD_QUEUED_JOBS_PER_USER": "-1"})


def test_a_count_may_reach_its_limit_but_not_pass_it():
    limits.check_count(limits.SCHEDULES, 3, current=2)
    limits.check_count(limits.QUEUED_JOBS, 4, current=1, adding=3)
    limits.check_count(limits.SESSIONS, 0, current=10**6)  # 0: no limit
    with pytest.raises(limits.LimitReached) as refused:
        limits.check_count(limits.QUEUED_JOBS, 4, current=2, adding=3)
    error = refused.value
    assert (error.status, error.code) == (409, "limit_reached")
    assert error.details == {"limit": "queuedJobs", "max": 4, "current": 2, "adding": 3}
    assert "CREWBOARD_QUEUED_JOBS_PER_USER" in error.message


def test_chat_turns_past_the_limit_are_told_when_to_retry():
    limits.check_chat_turns(2, running=1)
    limits.check_chat_turns(0, running=50)
    with pytest.raises(TooManyRequests) as refused:
        limits.check_chat_turns(2, running=2)
    assert refused.value.headers == {"Retry-After": str(limits.CHAT_RETRY_AFTER_S)}
    assert refused.value.details["limit"] == "chatTurns"
