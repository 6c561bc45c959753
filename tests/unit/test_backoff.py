"""The supervisor's pure decisions: retry backoff, how a reaped run is
classified, and how a run's prompt is composed (the dispatcher's next delay is
in ``test_polling.py``)."""

from __future__ import annotations

import pytest

from crewboard.board.dispatch import RETRY_CAP_S, retry_delay_s
from crewboard.board.models import RunOutcome
from crewboard.supervisor.launcher import classify
from crewboard.workflows.run_prompt import ParentResult, PromptParts, compose_prompt


class TestSupervisorBackoff:
    def test_doubles_from_two_seconds(self) -> None:
        assert [retry_delay_s(n) for n in (1, 2, 3, 4)] == [2, 4, 8, 16]

    def test_is_capped_even_for_huge_counts(self) -> None:
        assert retry_delay_s(9) == 512
        assert retry_delay_s(10) == RETRY_CAP_S
        assert retry_delay_s(10_000) == RETRY_CAP_S

    def test_no_failure_no_wait(self) -> None:
        assert retry_delay_s(0) == 0

    def test_base_and_cap_are_parameters(self) -> None:
        assert retry_delay_s(3, base_s=3, cap_s=20) == 20
        assert retry_delay_s(2, base_s=3, cap_s=20) == 9


def rec(type_: str, **fields: object) -> dict[str, object]:
    return {"seq": 1, "ts": "2026-11-28T21:00:00.000Z", "type": type_, **fields}


class TestSupervisorClassify:
    def test_final_result_is_success_even_if_killed_after(self) -> None:
        ending = classify(rec("final_result", text="the answer"), -9, RunOutcome.TIMED_OUT, 5)
        assert ending.outcome == RunOutcome.SUCCEEDED
        assert ending.result == "the answer"

    def test_blocked_record_is_blocked_with_its_reason(self) -> None:
        ending = classify(rec("blocked", reason="need a key"), 3, None, 5)
        assert (ending.outcome, ending.error) == (RunOutcome.BLOCKED, "need a key")

    def test_runner_error_is_a_failure_with_its_message(self) -> None:
        ending = classify(rec("error", message="provider said no"), 1, None, 5)
        assert (ending.outcome, ending.error) == (RunOutcome.FAILED, "provider said no")

    @pytest.mark.parametrize(
        ("last", "code", "words"),
        [
            (None, -9, "killed by SIGKILL without a result"),
            (rec("text", text="half"), 0, "exited with status 0 without a result"),
            (rec("error", message="run cancelled (SIGTERM)"), 143, "run cancelled (SIGTERM)"),
            (None, 139, "exited with status 139"),
        ],
    )
    def test_signal_or_odd_exit_without_result_is_a_crash(self, last, code, words) -> None:
        ending = classify(last, code, None, 5)
        assert ending.outcome == RunOutcome.CRASHED
        assert words in (ending.error or "")

    @pytest.mark.parametrize(
        ("stopped_as", "words"),
        [
            (RunOutcome.TIMED_OUT, "timed out after 1.5 s"),
            (RunOutcome.CANCELLED, "cancelled"),
            (RunOutcome.INTERRUPTED, "supervisor stopped"),
        ],
    )
    def test_a_run_the_supervisor_stopped_ends_as_why_it_stopped(self, stopped_as, words) -> None:
        last = rec("error", message="run cancelled (SIGTERM)", cancelled=True)
        ending = classify(last, 143, stopped_as, 1.5)
        assert ending.outcome == stopped_as
        assert words in (ending.error or "")


class TestSupervisorPrompt:
    def test_prompt_alone_is_unchanged(self) -> None:
        assert compose_prompt(PromptParts("Do it.")) == "Do it.\n"

    def test_parents_comments_and_feedback_follow_in_order(self) -> None:
        text = compose_prompt(
            PromptParts(
                "Write the brief.",
                parents=(ParentResult(1, "research", "Research cats", "done", "Cats purr."),),
                comments=(("alice", "Keep it short."),),
                feedback="Mention dogs too.",
            )
        )
        assert text.startswith("Write the brief.\n")
        order = [text.index(s) for s in ("Cats purr.", "alice: Keep it short.", "Mention dogs")]
        assert order == sorted(order)
        assert "### Research cats (research)" in text
