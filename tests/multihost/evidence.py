"""What a multi-host run left behind, and what it must not show.

The board says which runs each job had and how they ended; the runners' own
logs, on the hosts that ran them, say when each run really worked (the times
of its first and last records) and what it produced. The checks here compare
the two, per job, and return what they found wrong in words a reader can act
on; an empty list means the property held.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from crewboard.clock import parse_iso
from crewboard.sessionlog import TERMINAL_TYPES, Record, read_records


@dataclass
class RunSeen:
    """One run: the board's row and the log(s) its runner wrote."""

    run_id: int
    job_id: int
    supervisor_id: str
    outcome: str
    # The host holding each log of this run (one, unless two hosts ran it).
    logs: dict[str, list[Record]] = field(default_factory=dict)
    # Its supervisor was killed or frozen and a peer's recovery closed it:
    # what that host never shipped no node can stream.
    cut_by_fault: bool = False

    def records(self) -> list[Record]:
        """The log as the runner wrote it: where more than one host holds a
        log of the run, the longest."""
        return max(self.logs.values(), key=len, default=[])

    def runner_host(self) -> str | None:
        """The host whose log of this run is the runner's (the longest)."""
        return max(self.logs, key=lambda host: len(self.logs[host]), default=None)

    def span(self) -> tuple[datetime, datetime] | None:
        """When the runner wrote its first and last record."""
        records = self.records()
        if not records:
            return None
        return parse_iso(records[0]["ts"]), parse_iso(records[-1]["ts"])


def read_log(path: str) -> list[Record]:
    return read_records(path)


def overlapping_runs(runs: list[RunSeen]) -> list[str]:
    """Runs of one job whose runners worked at the same time, by the times of
    their own logs' first and last records."""
    spans = [(run, span) for run in runs if (span := run.span())]
    found = []
    for i, (a, (a_start, a_end)) in enumerate(spans):
        for b, (b_start, b_end) in spans[i + 1 :]:
            if a_start < b_end and b_start < a_end:
                found.append(
                    f"job {a.job_id}: run {a.run_id} on {a.runner_host()} "
                    f"({a_start:%T.%f}–{a_end:%T.%f}) overlaps run {b.run_id} on "
                    f"{b.runner_host()} ({b_start:%T.%f}–{b_end:%T.%f})"
                )
    return found


def logged_on_two_hosts(runs: list[RunSeen]) -> list[str]:
    """Runs with a log on more than one host: besides its runner's, one that
    another host wrote at the run's log path, which there names its own file."""
    return [
        f"job {run.job_id}: run {run.run_id} has logs on "
        + ", ".join(f"{host} ({len(records)} records)" for host, records in run.logs.items())
        for run in runs
        if len(run.logs) > 1
    ]


def completed_twice(runs: list[RunSeen]) -> list[str]:
    """A job with more than one succeeded run on the board, or more than one
    ``final_result`` among its runs' logs."""
    if not runs:
        return []
    job_id = runs[0].job_id
    succeeded = [run.run_id for run in runs if run.outcome == "succeeded"]
    finals = [
        f"run {run.run_id} on {host}"
        for run in runs
        for host, records in run.logs.items()
        for record in records
        if record.get("type") == "final_result"
    ]
    found = []
    if len(succeeded) > 1:
        found.append(f"job {job_id}: {len(succeeded)} succeeded runs on the board: {succeeded}")
    if len(finals) > 1:
        found.append(f"job {job_id}: {len(finals)} final results in its logs: {finals}")
    return found


def frames_differ(run: RunSeen, node: str, frames: list[dict]) -> str | None:
    """What is wrong with the frames ``node`` streamed for ``run`` (each a
    frame's ``type`` and ``data``), compared with the runner's log and the
    run's outcome; None when they match. A run cut by a fault streams a
    prefix of its log, then the terminal record its recovery stored; any
    other run streams exactly its log."""
    records = run.records()
    expected = [(record.get("seq"), record.get("type")) for record in records]
    body = [frame for frame in frames if frame["type"] != "done"]
    got = [(frame["data"].get("seq"), frame["data"].get("type")) for frame in body]
    ends = [frame["data"] for frame in frames if frame["type"] == "done"]
    where = f"job {run.job_id} run {run.run_id} from {node}"
    if run.cut_by_fault:
        wrong = _not_prefix_then_terminal(got, expected)
        if wrong is not None:
            return f"{where}: {wrong}"
    elif got != expected:
        return (
            f"{where}: {len(got)} frames, its log has {len(expected)} records "
            f"(first difference at #{_first_difference(got, expected)})"
        )
    if not ends or ends[-1].get("outcome") != run.outcome:
        ended = ends[-1] if ends else "no done frame"
        return f"{where}: ended with {ended}, the board says {run.outcome}"
    return None


def _not_prefix_then_terminal(got: list[tuple], expected: list[tuple]) -> str | None:
    """What keeps ``got`` from being a prefix of the log ``expected`` with no
    terminal record in it, followed by one terminal record numbered next;
    None when it is that."""
    if not got or got[-1][1] not in TERMINAL_TYPES:
        return f"{len(got)} frames, not ending in a terminal record"
    prefix, (last_seq, _) = got[:-1], got[-1]
    if prefix != expected[: len(prefix)]:
        return (
            f"{len(prefix)} frames before the terminal one are not the start of its log "
            f"(first difference at #{_first_difference(prefix, expected)})"
        )
    if any(kind in TERMINAL_TYPES for _, kind in prefix):
        return "frames go on after a terminal record"
    if last_seq != len(prefix) + 1:
        return f"its terminal frame has seq {last_seq} after {len(prefix)} frames"
    return None


def _first_difference(a: list, b: list) -> int:
    for index, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return index
    return min(len(a), len(b))


def report(findings: dict[str, list[str]], examples: int = 6) -> str:
    """The failed properties, each with its count and first examples."""
    lines = []
    for name, found in findings.items():
        if found:
            lines.append(f"{name}: {len(found)}")
            lines += [f"    {line}" for line in found[:examples]]
            if len(found) > examples:
                lines.append(f"    … and {len(found) - examples} more")
    return "\n".join(lines)
