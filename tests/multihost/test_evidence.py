"""The multi-host test's checks catch what they are meant to: two runners of
one job at once, a job done twice, a run's log written on two hosts; and stay
quiet on a job whose runs followed one another."""

from __future__ import annotations

from tests.multihost.evidence import (
    RunSeen,
    completed_twice,
    frames_differ,
    logged_on_two_hosts,
    overlapping_runs,
)


def record(second: float, kind: str = "chunk", seq: int = 1) -> dict:
    return {"ts": f"2026-12-03T15:00:{second:06.3f}Z", "type": kind, "seq": seq}


def run(run_id: int, outcome: str, **logs: list[dict]) -> RunSeen:
    return RunSeen(run_id, 7, "supervisor", outcome, dict(logs))


def test_runs_one_after_another_pass_every_check() -> None:
    first = run(1, "interrupted", a=[record(1), record(5, "error")])
    second = run(2, "succeeded", b=[record(6), record(9, "final_result")])
    assert overlapping_runs([first, second]) == []
    assert completed_twice([first, second]) == []
    assert logged_on_two_hosts([first, second]) == []


def test_a_rescue_while_the_first_runner_still_works_is_an_overlap_and_a_double() -> None:
    # The first runner's host wrote on after the rescue began, and finished.
    frozen = run(1, "interrupted", a=[record(1), record(7, "final_result")], b=[record(4, "error")])
    rescue = run(2, "succeeded", b=[record(5), record(9, "final_result")])
    (overlap,) = overlapping_runs([frozen, rescue])
    assert "run 1 on a" in overlap and "run 2 on b" in overlap
    (twice,) = completed_twice([frozen, rescue])
    assert "2 final results" in twice
    (stray,) = logged_on_two_hosts([frozen, rescue])
    assert "run 1 has logs on a (2 records), b (1 records)" in stray


def test_two_succeeded_runs_on_the_board_are_a_double() -> None:
    runs = [run(1, "succeeded"), run(2, "succeeded")]
    assert completed_twice(runs) == ["job 7: 2 succeeded runs on the board: [1, 2]"]


def test_frames_must_match_the_log_and_end_with_the_boards_outcome() -> None:
    done = run(3, "succeeded", a=[record(1, "user_message", 1), record(2, "final_result", 2)])
    frames = [
        {"type": "user_message", "data": {"seq": 1, "type": "user_message"}},
        {"type": "final_result", "data": {"seq": 2, "type": "final_result"}},
        {"type": "done", "data": {"runId": 3, "outcome": "succeeded"}},
    ]
    assert frames_differ(done, "web-1", frames) is None
    assert "1 frames, its log has 2 records" in str(frames_differ(done, "web-1", frames[1:]))
    wrong_end = [*frames[:2], {"type": "done", "data": {"runId": 3, "outcome": "interrupted"}}]
    assert "the board says succeeded" in str(frames_differ(done, "web-1", wrong_end))


def test_a_run_cut_by_a_fault_streams_a_prefix_of_its_log_then_its_recovery() -> None:
    log = [record(1, "user_message", 1), record(2, "chunk", 2), record(3, "error", 3)]
    cut = run(4, "interrupted", a=log)
    cut.cut_by_fault = True

    def frames(*records: tuple[int, str]) -> list[dict]:
        body = [{"type": t, "data": {"seq": seq, "type": t}} for seq, t in records]
        return [*body, {"type": "done", "data": {"runId": 4, "outcome": "interrupted"}}]

    # The host shipped the first record only; the peer's recovery ended the run.
    assert frames_differ(cut, "web-1", frames((1, "user_message"), (2, "error"))) is None
    assert (
        frames_differ(cut, "web-1", frames((1, "user_message"), (2, "chunk"), (3, "error"))) is None
    )
    assert "not ending in a terminal record" in str(
        frames_differ(cut, "web-1", frames((1, "user_message"), (2, "chunk")))
    )
    assert "not the start of its log" in str(
        frames_differ(cut, "web-1", frames((1, "chunk"), (2, "error")))
    )
    assert "seq 4 after 1 frames" in str(
        frames_differ(cut, "web-1", frames((1, "user_message"), (4, "error")))
    )
    assert "after a terminal record" in str(
        frames_differ(
            cut, "web-1", frames((1, "user_message"), (2, "chunk"), (3, "error"), (4, "error"))
        )
    )
    # The same frames for a run no fault cut are a run not streamed as logged.
    whole = run(5, "interrupted", a=log)
    assert "2 frames, its log has 3 records" in str(
        frames_differ(whole, "web-1", frames((1, "user_message"), (2, "error")))
    )
