"""The plan checklist: one line per step, marked done, current or pending, with the current step highlighted."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from textual.content import Content
from textual.widgets import Static

MARKS = {"done": "✓", "in_progress": "▶", "pending": "·"}
STYLES = {"done": "$text-success", "in_progress": "bold $text-accent", "pending": "$text-muted"}
EMPTY = "no plan yet"


class PlanStepLike(Protocol):
    """What the pane reads from a plan step (core.events.PlanStep)."""

    title: str
    status: str


class PlanPane(Static):
    """The agent's plan as a checklist; the step in progress is highlighted."""

    DEFAULT_CSS = """
    PlanPane {
        height: auto;
        max-height: 40%;
        padding: 0 1;
        border: round $panel-lighten-2;
        border-title-color: $text-muted;
        overflow-y: auto;
        &.-empty { color: $text-muted; }
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(Content(EMPTY), id=id, classes="-empty")
        self.border_title = "Plan"

    def show_plan(self, steps: Sequence[PlanStepLike], note: str | None = None) -> None:
        """Replace the checklist with these steps (the agent always sends the whole plan)."""
        lines = [
            Content.styled(f"{MARKS.get(step.status, '·')} {step.title}", STYLES.get(step.status, ""))
            for step in steps
        ]
        if note:
            lines.append(Content.styled(note, "italic $text-muted"))
        self.set_class(not lines, "-empty")
        self.update(Content("\n").join(lines) if lines else Content(EMPTY))
        done = sum(step.status == "done" for step in steps)
        self.border_title = f"Plan {done}/{len(steps)}" if steps else "Plan"

    def clear(self) -> None:
        """Forget the plan (a different session is being opened)."""
        self.show_plan([])
