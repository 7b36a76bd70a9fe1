"""The update_plan tool's logic: turn the model's loosely-shaped steps into a validated plan."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from core.errors import WorkspaceError
from core.events import PlanStep

MAX_STEPS = 30
MAX_TITLE_CHARS = 200

# Small local models rarely use the exact vocabulary; map what they commonly say instead.
_STATUS = {
    "pending": "pending", "todo": "pending", "to_do": "pending", "not_started": "pending", "open": "pending",
    "planned": "pending", "queued": "pending",
    "in_progress": "in_progress", "inprogress": "in_progress", "doing": "in_progress", "active": "in_progress",
    "started": "in_progress", "ongoing": "in_progress", "current": "in_progress", "wip": "in_progress",
    "done": "done", "completed": "done", "complete": "done",
}
_TITLE_KEYS = ("title", "step", "content", "task")
_MARKS = {"done": "[x]", "in_progress": "[>]", "pending": "[ ]"}


def _status(raw: Any, number: int) -> str:
    if raw is None:
        return "pending"
    key = "_".join(str(raw).strip().lower().replace("-", " ").split())
    status = _STATUS.get(key)
    if status is None:
        raise WorkspaceError(f"update_plan: step {number} has status {raw!r}; use pending, in_progress or done")
    return status


def _title(item: Mapping[str, Any], number: int) -> str:
    raw = next((item[k] for k in _TITLE_KEYS if item.get(k) not in (None, "")), "")
    title = " ".join(str(raw).split())  # one line each: the plan renders as a checklist
    if not title:
        raise WorkspaceError(f"update_plan: step {number} has no title; give every step a short non-empty "
                             "title, e.g. {\"title\": \"run the tests\", \"status\": \"pending\"}")
    return title if len(title) <= MAX_TITLE_CHARS else title[:MAX_TITLE_CHARS - 1] + "…"


def _as_mapping(item: Any, number: int) -> Mapping[str, Any]:
    if isinstance(item, BaseModel):
        return item.model_dump()
    if isinstance(item, Mapping):
        return item
    if isinstance(item, str):
        return {"title": item}
    raise WorkspaceError(f"update_plan: step {number} is {type(item).__name__}; each step must be an object "
                         "like {\"title\": \"...\", \"status\": \"pending\"}")


def normalize_plan(steps: Sequence[Any] | str, note: str | None = None) -> tuple[list[PlanStep], str]:
    """Validate and normalise the steps; return them with the short confirmation the model reads.

    The caller keeps ``note`` on the PlanUpdated event; the confirmation only acknowledges it.
    """
    if isinstance(steps, str):  # some models send the list JSON-encoded
        try:
            steps = json.loads(steps)
        except json.JSONDecodeError as exc:
            raise WorkspaceError("update_plan: steps must be a list of {title, status} objects, "
                                 f"not text ({exc.msg})") from exc
    if not isinstance(steps, Sequence) or isinstance(steps, str):
        raise WorkspaceError("update_plan: steps must be a list of {title, status} objects")
    if len(steps) > MAX_STEPS:
        raise WorkspaceError(f"update_plan: {len(steps)} steps given; keep the plan to at most {MAX_STEPS} "
                             "steps by merging small ones")
    plan = []
    for number, item in enumerate(steps, start=1):
        fields = _as_mapping(item, number)
        plan.append(PlanStep(title=_title(fields, number), status=_status(fields.get("status"), number)))
    noted = "; note recorded" if note and note.strip() else ""
    if not plan:
        return plan, f"plan cleared: 0 steps{noted}"
    counts = {s: sum(step.status == s for step in plan) for s in ("done", "in_progress", "pending")}
    summary = f"{counts['done']} done, {counts['in_progress']} in progress, {counts['pending']} pending"
    noun = "step" if len(plan) == 1 else "steps"
    return plan, f"plan updated: {len(plan)} {noun} ({summary}){noted}"


def render_plan_text(steps: Sequence[PlanStep]) -> str:
    """The plan as a checklist for the headless CLI: [x] done, [>] in progress, [ ] pending."""
    if not steps:
        return "(no plan)"
    return "\n".join(f"{_MARKS[step.status]} {step.title}" for step in steps)
