"""Pilot tests of the app over the REAL engine (built as `agent-tui` builds it) and the scripted server over HTTP."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Static

from core.config import load_settings
from tests.fakes.model_server import Reply, ScriptedModelServer, ToolCall
from tui.__main__ import _make_engine_factory, _sessions_provider
from tui.app import DevAgentApp
from tui.screens.approval_screen import ApprovalScreen
from tui.screens.main_screen import MainScreen

SIZE = (120, 40)
TIMEOUT_S = 20.0
OLD = "def add(a, b):\n    return a - b\n"
NEW = "def add(a, b):\n    return a + b\n"
PLAN = ToolCall("update_plan", {"steps": [{"title": "Read calc.py", "status": "done"},
                                          {"title": "Fix add()", "status": "in_progress"}]})
WRITE = ToolCall("write_file", {"path": "calc.py", "content": NEW})


@pytest.fixture
def server() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer(model_id="scripted-model") as s:
        yield s


@pytest.fixture
def make_app(server: ScriptedModelServer, workspace: Path, state_dir: Path) -> Callable[..., DevAgentApp]:
    def factory(*, watch_workspace: bool = False, **env: str) -> DevAgentApp:
        settings = load_settings({"HOME": str(state_dir), "OPENAI_BASE_URL": server.url, "OPENAI_API_KEY": "k",
                                  "AGENT_WORKSPACE": str(workspace), "AGENT_STATE_DIR": str(state_dir),
                                  "AGENT_REVIEW_ROUNDS": "0", **env})
        return DevAgentApp(engine_factory=_make_engine_factory(settings), workspace_label=str(workspace),
                           approval_mode=settings.approval, sessions_provider=_sessions_provider(settings),
                           watch_workspace=watch_workspace)

    return factory


async def until(pilot: Pilot[Any], condition: Callable[[], object], what: str) -> None:
    """Let the app run until the condition holds (bounded, so a broken app fails instead of hanging)."""
    deadline = asyncio.get_running_loop().time() + TIMEOUT_S
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


def transcript_lines(app: DevAgentApp) -> list[str]:
    lines = []
    for widget in app.main_screen.transcript.query(Static):
        content = widget.content  # an answer is a rich Markdown: its source is `.markup`
        lines.append(getattr(content, "markup", None) or str(content))
    return lines


def statuses(app: DevAgentApp) -> list[str]:
    assert app.engine is not None
    return [e.status for e in app.engine.history if e.type == "run_finished"]


async def send(pilot: Pilot[Any], text: str) -> None:
    await pilot.press(*text, "enter")


async def open_and_send(pilot: Pilot[Any], app: DevAgentApp, goal: str) -> None:
    await until(pilot, lambda: app.engine is not None, "the engine to start")
    await send(pilot, goal)


async def quit_app(pilot: Pilot[Any], app: DevAgentApp) -> None:
    await pilot.press("ctrl+q")
    await until(pilot, lambda: app.engine is None, "the engine to close")


async def test_goal_plan_approval_with_diff_then_the_file_is_written_and_the_run_finishes(
        make_app: Callable[..., DevAgentApp], server: ScriptedModelServer, workspace: Path) -> None:
    (workspace / "calc.py").write_text(OLD)
    server.add(Reply(tool_calls=[PLAN]), Reply(text="Fixing it.", tool_calls=[WRITE]),
               Reply(text="add() adds now."))
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_and_send(pilot, app, "fix add in calc.py")
        await until(pilot, lambda: isinstance(app.screen, ApprovalScreen), "the approval modal")
        plan = str(app.main_screen.plan.render())
        assert "✓ Read calc.py" in plan and "Fix add()" in plan
        modal = app.screen
        assert "Approve write to calc.py?" in str(modal.query_one("#approval-title", Static).render())
        diff = str(modal.query_one("#approval-diff", Static).render())
        assert re.search(r"-\s+return a - b", diff) and re.search(r"\+\s+return a \+ b", diff), diff
        assert (workspace / "calc.py").read_text() == OLD, "nothing is written before the approval"
        await pilot.press("y")
        await until(pilot, lambda: statuses(app)[-1:] == ["done"], "the run to finish")
        await until(pilot, lambda: any("add() adds now." in line for line in transcript_lines(app)),
                    "the final answer in the transcript")
        assert (workspace / "calc.py").read_text() == NEW
        assert isinstance(app.screen, MainScreen)
        assert transcript_lines(app)[1] == "fix add in calc.py"
        await quit_app(pilot, app)


async def test_rejecting_with_a_reason_sends_the_reason_to_the_model(
        make_app: Callable[..., DevAgentApp], server: ScriptedModelServer, workspace: Path) -> None:
    (workspace / "calc.py").write_text(OLD)
    server.add(Reply(tool_calls=[WRITE]), Reply(text="Understood, I will keep the file."))
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_and_send(pilot, app, "fix add")
        await until(pilot, lambda: isinstance(app.screen, ApprovalScreen), "the approval modal")
        await pilot.press("n")
        await send(pilot, "use the existing helper instead")
        await until(pilot, lambda: statuses(app)[-1:] == ["done"], "the run to finish")
        assert (workspace / "calc.py").read_text() == OLD
        tool_messages = [str(m.get("content")) for m in server.requests[-1]["messages"] if m.get("role") == "tool"]
        assert any("use the existing helper instead" in m for m in tool_messages), tool_messages
        await until(pilot, lambda: "rejected" in app.main_screen.tools.row_text(approval_call_id(app)),
                    "the rejected call in the tool list")
        await quit_app(pilot, app)


def approval_call_id(app: DevAgentApp) -> str:
    assert app.engine is not None
    return next(e.call_id for e in app.engine.history if e.type == "approval_requested")


async def test_escape_interrupts_a_slow_answer_and_the_input_still_works(
        make_app: Callable[..., DevAgentApp], server: ScriptedModelServer) -> None:
    server.add(Reply(text="slowly " * 400, chunk_size=7, delay_s=0.02), Reply(text="Second answer."))
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_and_send(pilot, app, "tell me a long story")
        await until(pilot, lambda: app.engine is not None and any(e.type == "assistant_delta"
                                                                   for e in app.engine.history),
                    "the answer to start streaming")
        await pilot.press("escape")
        await until(pilot, lambda: statuses(app)[-1:] == ["cancelled"], "the run to be interrupted")
        await until(pilot, lambda: "run interrupted" in transcript_lines(app), "the interruption note")
        await until(pilot, lambda: app.engine is not None and not app.engine.busy, "the engine to be idle")
        await send(pilot, "short one please")
        await until(pilot, lambda: statuses(app)[-1:] == ["done"], "the second run to finish")
        await until(pilot, lambda: any("Second answer." in line for line in transcript_lines(app)),
                    "the second answer")
        await quit_app(pilot, app)


async def test_ctrl_z_after_a_write_restores_the_file_and_lists_it(
        make_app: Callable[..., DevAgentApp], server: ScriptedModelServer, workspace: Path) -> None:
    (workspace / "calc.py").write_text(OLD)
    server.add(Reply(tool_calls=[WRITE]), Reply(text="Fixed."))
    app = make_app(AGENT_APPROVAL="auto-edit")
    async with app.run_test(size=SIZE) as pilot:
        await open_and_send(pilot, app, "fix add")
        await until(pilot, lambda: statuses(app)[-1:] == ["done"], "the run to finish")
        assert (workspace / "calc.py").read_text() == NEW
        await pilot.press("ctrl+z")
        await until(pilot, lambda: "undo: restored 1 file(s): calc.py" in transcript_lines(app), "the undo note")
        assert (workspace / "calc.py").read_text() == OLD
        await quit_app(pilot, app)


async def test_an_edit_outside_the_agent_is_marked_in_the_transcript(
        make_app: Callable[..., DevAgentApp], server: ScriptedModelServer, workspace: Path) -> None:
    (workspace / "calc.py").write_text(OLD)
    server.add(Reply(text="I see your change."))
    app = make_app(watch_workspace=True)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.engine is not None, "the engine to start")
        await app.workers.wait_for_complete()  # the engine worker ends once the watcher is in place
        (workspace / "calc.py").write_text(NEW)
        await until(pilot, lambda: "edited outside the agent: calc.py" in transcript_lines(app), "the external note")
        await send(pilot, "go on")
        await until(pilot, lambda: statuses(app)[-1:] == ["done"], "the run to finish")
        user = [m for m in server.requests[-1]["messages"] if m.get("role") == "user"][-1]
        assert "calc.py" in str(user["content"]) and "outside the agent" in str(user["content"])
        await quit_app(pilot, app)
