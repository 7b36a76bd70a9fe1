"""normalize_plan: the model's steps become a validated plan, or an error the model can act on."""

from __future__ import annotations

import pytest

from core.errors import WorkspaceError
from core.events import PlanStep
from tools.plan import MAX_STEPS, normalize_plan, render_plan_text


def test_valid_plan_and_summary() -> None:
    steps, text = normalize_plan([
        {"title": "read the code", "status": "done"},
        {"title": "fix the bug", "status": "in_progress"},
        {"title": "run the tests", "status": "pending"},
        {"title": "write the summary"},
    ])
    assert steps == [PlanStep(title="read the code", status="done"),
                     PlanStep(title="fix the bug", status="in_progress"),
                     PlanStep(title="run the tests", status="pending"),
                     PlanStep(title="write the summary", status="pending")]
    assert text == "plan updated: 4 steps (1 done, 1 in progress, 2 pending)"


@pytest.mark.parametrize(("given", "expected"), [
    ("todo", "pending"), ("TODO", "pending"), ("to-do", "pending"), ("not started", "pending"),
    ("in-progress", "in_progress"), ("In Progress", "in_progress"), ("doing", "in_progress"),
    ("inprogress", "in_progress"), ("completed", "done"), ("Complete", "done"), (" done ", "done"),
    (None, "pending"),
])
def test_status_synonyms(given: str | None, expected: str) -> None:
    steps, _ = normalize_plan([{"title": "step", "status": given}])
    assert steps[0].status == expected


def test_unknown_status_is_refused_with_the_allowed_values() -> None:
    with pytest.raises(WorkspaceError) as err:
        normalize_plan([{"title": "a", "status": "done"}, {"title": "b", "status": "finished"}])
    assert err.value.message == "update_plan: step 2 has status 'finished'; use pending, in_progress or done"


@pytest.mark.parametrize("bad", [{"status": "done"}, {"title": "   "}, {"title": None}])
def test_step_without_title_is_refused(bad: dict) -> None:
    with pytest.raises(WorkspaceError, match="step 1 has no title"):
        normalize_plan([bad])


def test_other_shapes_are_accepted_or_refused_clearly() -> None:
    steps, _ = normalize_plan(["first", PlanStep(title="second", status="done"), {"step": "third"}])
    assert [(s.title, s.status) for s in steps] == [("first", "pending"), ("second", "done"),
                                                    ("third", "pending")]
    steps, _ = normalize_plan('[{"title": "encoded", "status": "completed"}]')
    assert steps == [PlanStep(title="encoded", status="done")]
    with pytest.raises(WorkspaceError, match="step 2 is int"):
        normalize_plan(["ok", 5])
    with pytest.raises(WorkspaceError, match="must be a list"):
        normalize_plan("not json")


def test_titles_are_single_line_and_bounded() -> None:
    steps, _ = normalize_plan([{"title": "two\nlines\t here"}, {"title": "x" * 500}])
    assert steps[0].title == "two lines here"
    assert len(steps[1].title) == 200 and steps[1].title.endswith("…")


def test_step_cap() -> None:
    steps, text = normalize_plan([{"title": f"s{i}"} for i in range(MAX_STEPS)])
    assert len(steps) == MAX_STEPS and text.startswith(f"plan updated: {MAX_STEPS} steps")
    with pytest.raises(WorkspaceError, match=f"31 steps given; keep the plan to at most {MAX_STEPS}"):
        normalize_plan([{"title": f"s{i}"} for i in range(MAX_STEPS + 1)])


def test_empty_plan_and_note() -> None:
    assert normalize_plan([]) == ([], "plan cleared: 0 steps")
    _, text = normalize_plan([{"title": "only", "status": "doing"}], note="tests first")
    assert text == "plan updated: 1 step (0 done, 1 in progress, 0 pending); note recorded"


def test_render_plan_text() -> None:
    steps, _ = normalize_plan([{"title": "a", "status": "done"}, {"title": "b", "status": "in_progress"},
                               {"title": "c"}])
    assert render_plan_text(steps) == "[x] a\n[>] b\n[ ] c"
    assert render_plan_text([]) == "(no plan)"
