"""Chat session rows on a real board.db: create or reopen by (owner, name),
listing by last use, touching, deleting, and the session-name rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crewboard.board import chats
from crewboard.errors import ValidationFailed
from tests.conftest import add_user

NOW = datetime(2026, 11, 28, 21, 0, tzinfo=UTC)


@pytest.fixture
def owner(config, home):
    return add_user(config, "owner@example.test")


@pytest.fixture
def other(config, home):
    return add_user(config, "other@example.test")


def test_open_creates_then_reopens_the_same_session(owner):
    row, created = chats.open_session(owner.id, "plans", "assistant", "offline:scripted", now=NOW)
    assert created
    again, created_again = chats.open_session(
        owner.id, "plans", "writer", "offline:scripted", now=NOW
    )
    assert not created_again and again.id == row.id
    # Reopening applies the agent asked for; the session (and its history) stays.
    assert again.agent == "writer" and again.created_at == row.created_at
    assert again.updated_at >= row.updated_at


def test_names_are_unique_per_owner_not_globally(owner, other):
    mine, _ = chats.open_session(owner.id, "same", "assistant", "offline:scripted", now=NOW)
    theirs, created = chats.open_session(other.id, "same", "assistant", "offline:scripted", now=NOW)
    assert created and theirs.id != mine.id
    assert chats.get_by_name(owner.id, "same").id == mine.id
    assert chats.get_by_name(other.id, "same").id == theirs.id
    assert chats.get_by_name(owner.id, "SAME") is None


def test_list_is_most_recently_used_first(owner, other):
    first, _ = chats.open_session(owner.id, "first", "assistant", "offline:scripted", now=NOW)
    chats.open_session(owner.id, "second", "assistant", "offline:scripted", now=NOW)
    chats.open_session(other.id, "not mine", "assistant", "offline:scripted", now=NOW)
    assert [r.session_name for r in chats.list_sessions(owner.id)] == ["second", "first"]
    chats.touch(first.id, now=NOW + timedelta(seconds=1))
    assert [r.session_name for r in chats.list_sessions(owner.id)] == ["first", "second"]


def test_delete(owner):
    row, _ = chats.open_session(owner.id, "doomed", "assistant", "offline:scripted", now=NOW)
    assert chats.delete_session(row.id)
    assert chats.get_session(row.id) is None
    assert not chats.delete_session(row.id)


def test_public_shapes(owner):
    row, _ = chats.open_session(owner.id, "shape", "coder", "offline:scripted", now=NOW)
    public = chats.session_public(row, live=True)
    assert list(public) == [
        "id", "sessionName", "agent", "modelSpec", "createdAt", "updatedAt", "live",
    ]  # fmt: skip
    assert public["live"] is True and public["createdAt"].endswith("Z")
    assert chats.name_entry(row) == {
        "sessionName": "shape",
        "id": row.id,
        "updatedAt": public["updatedAt"],
    }


@pytest.mark.parametrize(
    "name",
    [
        "a/b", "a\\b", "..", "x..y", "../etc", "nul\x00", "tab\there", "new\nline", "del\x7f",
        "\u202eright-to-left", "zero\u200bwidth", "\ufeffbom", "para\u2029sep", "x" * 101,
        "", "   ", " lead", "trail ", 5, None,
    ],
)  # fmt: skip
def test_bad_names_are_refused_before_anything_is_written(owner, name):
    assert chats.name_problem(name) is not None
    with pytest.raises(ValidationFailed) as caught:
        chats.open_session(owner.id, name, "assistant", "offline:scripted", now=NOW)
    assert "sessionName" in caught.value.fields
    assert chats.list_sessions(owner.id) == []


@pytest.mark.parametrize(
    "name", ["plans", "Q3 plan: draft #2 (v1.0)", "ünïcode ✓", "👩‍💻 coding", "x" * 100, "a.b"]
)
def test_good_names(name):
    assert chats.name_problem(name) is None
    assert chats.check_name(name) == name


def test_generated_names_are_valid_and_distinct():
    names = {chats.generated_name("assistant", now=NOW) for _ in range(20)}
    assert len(names) == 20
    for name in names:
        assert name.startswith("assistant ") and chats.name_problem(name) is None
