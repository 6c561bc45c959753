"""What a job's runner is told: the job's own rendered prompt, then what the
jobs it needs found, what people commented and the feedback of a redo.

Pure text: the board reads these parts from its rows
(:func:`crewboard.board.dispatch.prompt_parts`) and this module lays them out.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ParentResult:
    """A job this one needs, with its final result (None until it has one)."""

    job_id: int
    key: str
    title: str
    status: str
    result: str | None


@dataclass(frozen=True)
class PromptParts:
    """Everything a run's prompt is made of."""

    prompt: str
    parents: tuple[ParentResult, ...] = ()
    comments: tuple[tuple[str, str], ...] = ()  # (author, text), oldest first
    feedback: str | None = None


def compose_prompt(parts: PromptParts) -> str:
    """The full prompt of a run: the job's rendered prompt, then each parent's
    final result, the comments and the redo feedback, in that order."""
    sections = [parts.prompt.rstrip()]
    if parts.parents:
        lines = ["## Results of the jobs this one needs"]
        for parent in parts.parents:
            lines.append(f"\n### {parent.title} ({parent.key})\n")
            lines.append((parent.result or "(no result)").rstrip())
        sections.append("\n".join(lines))
    if parts.comments:
        lines = ["## Comments on this job"]
        lines += [f"- {author}: {text.strip()}" for author, text in parts.comments]
        sections.append("\n".join(lines))
    if parts.feedback:
        sections.append("## Feedback on the previous result\n\n" + parts.feedback.strip())
    return "\n\n".join(sections) + "\n"
