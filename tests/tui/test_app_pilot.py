"""Pilot tests of the app shell over a recording engine double: events reach the panes, keys become engine ops."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from textual.widgets import Collapsible, Static, Tabs
from textual.worker import WorkerFailed

from core.errors import EndpointError
from core.events import (
    ApprovalDecided,
    ApprovalRequested,
    AssistantDelta,
    CheckpointRestored,
    ErrorEvent,
    ReasoningDelta,
    RunFinished,
    UserMessage,
)
from tests.tui.engine_double import (
    ANSWER,
    SESSION_ID,
    RecordingEngine,
    make_app,
    run_end,
    run_until_answer,
    session_start,
    whole_run,
)
from tui.app import DevAgentApp
from tui.commands import DevAgentCommands
from tui.widgets.transcript import MAX_MESSAGES, REPLAY_MESSAGES

SIZE = (120, 40)


async def started(app: DevAgentApp, pilot) -> None:
    """Wait for the app's workers (a failed one is expected in some tests: the app reports it), then a frame."""
    with contextlib.suppress(WorkerFailed):
        await app.workers.wait_for_complete()
    await pilot.pause()


async def wait_for_screen(pilot, screen_type: type) -> None:
    """Poll until a screen pushed from a worker is on top (no fixed sleeps)."""
    for _ in range(200):
        if isinstance(pilot.app.screen, screen_type):
            return
        await pilot.pause(0.02)
    raise AssertionError(f"{screen_type.__name__} did not open")


def notices(app: DevAgentApp) -> list[str]:
    return [notification.message for notification in app._notifications]


async def test_first_frame_paints_before_the_engine_is_built() -> None:
    gate = asyncio.Event()
    engine = RecordingEngine()

    async def slow_factory() -> RecordingEngine:
        await gate.wait()
        return engine

    app = DevAgentApp(engine_factory=slow_factory, workspace_label="/work/ws")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.engine is None
        assert "connecting…" in app.main_screen.status.line
        assert app.focused is app.main_screen.prompt
        gate.set()
        await started(app, pilot)
        assert app.engine is engine
        assert "connecting" not in app.main_screen.status.line


async def test_live_events_reach_every_pane() -> None:
    app, engine = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        engine.emit(*session_start(), *run_until_answer())
        await pilot.pause(0.3)
        screen = app.main_screen
        assert screen.transcript.query(".streaming"), "the answer streams into a live widget"
        assert "running" not in screen.tools.row_text("call-1")
        engine.emit(*run_end(30))
        await pilot.pause(0.2)

        plan = str(screen.plan.render())
        assert "✓ Read src/calc.py" in plan and "▶ Fix add()" in plan and "· Run the tests" in plan
        assert screen.tools.row_text("call-1") == "✓ edit_file src/calc.py  ok 42ms"
        assert screen.tools.row_text("call-2") == "✓ run_command pytest -q  ok 1.8s"
        assert screen.diff.border_title == "Diff: applied (edit_file)"
        assert "return a + b" in str(screen.diff.query_one("#diff-body", Static).render())
        assert not screen.transcript.query(".streaming"), "the finished answer is one Static"
        answers = screen.transcript.query(".assistant-message")
        assert len(answers) == 1
        assert str(screen.transcript.query_one(".user-message", Static).render()) == "fix the add function"
        line = screen.status.line
        assert "tokens 5.5k" in line and "ctx 4.1k/32.8k" in line and f"session {SESSION_ID[:8]}" in line
        assert app.last_answer == ANSWER


async def test_running_turn_shows_elapsed_time_from_the_clock() -> None:
    now = [100.0]
    app, engine = make_app(clock=lambda: now[0])
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        engine.emit(*session_start(), *run_until_answer()[:2])
        await pilot.pause()
        now[0] = 165.0
        app.main_screen.status._render_line()
        assert "⏱ 1:05" in app.main_screen.status.line
        engine.emit(RunFinished(status="done"))
        await pilot.pause()
        assert "last turn 1:05" in app.main_screen.status.line


async def test_enter_sends_the_input_and_clears_it() -> None:
    app, engine = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        await pilot.press(*"hello", "ctrl+j", *"there", "enter")
        await app.workers.wait_for_complete()
        assert ("submit", "hello\nthere") in engine.ops
        assert app.main_screen.prompt.text == ""


async def test_enter_while_a_run_is_busy_sends_nothing_and_says_why() -> None:
    app, engine = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        engine.busy = True
        await pilot.press(*"next", "enter")
        await app.workers.wait_for_complete()
        assert not [op for op in engine.ops if op[0] == "submit"]
        assert app.main_screen.prompt.text == "next", "typed-ahead text is kept"
        assert "a run is in progress: escape interrupts it" in notices(app)


async def test_initial_goal_is_submitted_once_the_engine_is_up() -> None:
    app, engine = make_app(initial_goal="add a README")
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        assert ("submit", "add a README") in engine.ops


async def test_escape_interrupts_the_running_turn() -> None:
    app, engine = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        engine.busy = True
        await pilot.press("escape")
        await app.workers.wait_for_complete()
        assert ("cancel",) in engine.ops


async def test_undo_and_redo_keys_call_the_engine_and_show_restored_files() -> None:
    app, engine = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        await pilot.press("ctrl+z", "ctrl+y")
        await app.workers.wait_for_complete()
        assert [op for op in engine.ops if op[0] in ("undo", "redo")] == [("undo",), ("redo",)]
        engine.emit(CheckpointRestored(action="undo", checkpoint="c1", files=["src/calc.py", "README.md"]))
        await pilot.pause()
        notes = [str(w.render()) for w in app.main_screen.transcript.query(".note")]
        assert "undo: restored 2 file(s): src/calc.py, README.md" in notes


async def test_ctrl_o_expands_the_latest_tool_call_with_its_arguments_and_output() -> None:
    app, engine = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        engine.emit(*session_start(), *run_until_answer())
        await pilot.pause()
        assert app.main_screen.tools.expanded_call_ids() == []
        await pilot.press("ctrl+o")
        await pilot.pause()
        assert app.main_screen.tools.expanded_call_ids() == ["call-2"]
        row = list(app.main_screen.tools.query(Collapsible))[-1]
        assert '"command": "pytest -q"' in str(row.query_one(".call-arguments", Static).render())
        assert "3 passed in 0.02s" in list(row.query_one(".call-output").lines)


async def test_reasoning_is_collapsed_and_errors_show_their_hint() -> None:
    app, engine = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        engine.emit(ReasoningDelta(message_id="r1", text="thinking about add()"),
                    ErrorEvent(message="the model endpoint went away", hint="start LM Studio's server"))
        await pilot.pause()
        reasoning = app.main_screen.transcript.query_one(".reasoning", Collapsible)
        assert reasoning.collapsed
        error = str(app.main_screen.transcript.query_one(".error-message", Static).render())
        assert "the model endpoint went away" in error and "fix: start LM Studio's server" in error


async def test_long_session_replay_keeps_the_transcript_bounded() -> None:
    history = session_start() + [UserMessage(seq=i + 2, text=f"message {i}") for i in range(10_000)]
    app, _ = make_app(RecordingEngine(history))
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        transcript = app.main_screen.transcript
        for _ in range(100):  # older replayed messages are mounted in batches after the first paint
            if not transcript.backfilling:
                break
            await pilot.pause(0.02)
        assert len(transcript.query(".user-message")) == REPLAY_MESSAGES
        assert transcript.pruned == 10_000 - REPLAY_MESSAGES
        assert f"{10_000 - REPLAY_MESSAGES} earlier messages" in str(
            transcript.query_one("#pruned-note", Static).render())
        assert str(transcript.query(".user-message").last().render()) == "message 9999"


async def test_live_messages_beyond_the_limit_prune_the_oldest() -> None:
    app, engine = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        engine.emit(*[UserMessage(text=f"m{i}") for i in range(MAX_MESSAGES + 5)])
        await pilot.pause()
        transcript = app.main_screen.transcript
        assert len(transcript.query(".user-message")) == MAX_MESSAGES
        assert transcript.pruned == 5


async def test_resume_replays_history_without_running_anything() -> None:
    app, engine = make_app(RecordingEngine(whole_run()))
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        assert [op for op in engine.ops if op[0] != "start"] == []
        assert app.main_screen.tools.row_text("call-2") == "✓ run_command pytest -q  ok 1.8s"
        assert app.main_screen.diff.border_title == "Diff: applied (edit_file)"
        assert len(app.main_screen.transcript.query(".assistant-message")) == 1


async def test_narrow_terminal_shows_one_pane_at_a_time_with_tabs() -> None:
    app, _ = make_app(RecordingEngine(whole_run()))
    async with app.run_test(size=(80, 24)) as pilot:
        await started(app, pilot)
        screen = app.main_screen
        assert screen.query_one(Tabs).display
        assert screen.transcript.display and not screen.plan.display
        screen.show_pane("plan")
        await pilot.pause()
        assert screen.plan.display and not screen.transcript.display and not screen.diff.display


async def test_tiny_terminal_shows_only_a_notice() -> None:
    app, _ = make_app()
    async with app.run_test(size=(50, 12)) as pilot:
        await started(app, pilot)
        screen = app.main_screen
        assert screen.query_one("#too-small").display
        assert not screen.query_one("#panes").display and not screen.prompt.display


async def test_diff_full_screen_toggle() -> None:
    app, _ = make_app(RecordingEngine(whole_run()))
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        app.main_screen.diff.focus()
        await pilot.press("f")
        assert not app.main_screen.transcript.display and app.main_screen.diff.display
        await pilot.press("f")
        assert app.main_screen.transcript.display


async def test_start_failure_shows_a_banner_and_retry_runs_the_factory_again() -> None:
    engine = RecordingEngine()
    calls: list[int] = []

    async def factory() -> RecordingEngine:
        calls.append(1)
        if len(calls) == 1:
            raise EndpointError("cannot reach http://host.docker.internal:1234/v1", kind="unreachable",
                                hint="start LM Studio's local server")
        return engine

    app = DevAgentApp(engine_factory=factory)
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        banner = app.main_screen.banner
        assert banner.shown
        text = str(banner.render())
        assert "cannot reach http://host.docker.internal:1234/v1" in text
        assert "fix: start LM Studio's local server" in text and "Traceback" not in text
        await pilot.press("r")
        await started(app, pilot)
        assert len(calls) == 2 and app.engine is engine and not banner.shown


async def test_f5_retries_too() -> None:
    calls: list[int] = []

    async def factory() -> RecordingEngine:
        calls.append(1)
        raise ConnectionRefusedError("connection refused")

    app = DevAgentApp(engine_factory=factory)
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        app.main_screen.prompt.focus()
        await pilot.press("f5")
        await started(app, pilot)
        assert len(calls) == 2
        assert "connection refused" in str(app.main_screen.banner.render())


def approval(call_id: str) -> ApprovalRequested:
    return ApprovalRequested(call_id=call_id, tool="run_command", arguments='{"command": "make test"}',
                             kind="command", summary="make test", reason="not in the allowed commands",
                             suggested_rule="make test")


async def test_replayed_pending_approval_opens_the_modal_after_replay() -> None:
    approval_screen = pytest.importorskip("tui.screens.approval_screen")
    decided = [approval("call-0"), ApprovalDecided(call_id="call-0", decision="approve")]
    app, engine = make_app(RecordingEngine(session_start() + decided + [approval("call-9")]))
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        assert isinstance(app.screen, approval_screen.ApprovalScreen)
        assert "approvals 1" in app.main_screen.status.line
        await pilot.press("y")
        await app.workers.wait_for_complete()
        assert ("approve", "call-9", False) in engine.ops
        assert app.screen is app.main_screen


async def test_live_approvals_queue_one_modal_at_a_time() -> None:
    approval_screen = pytest.importorskip("tui.screens.approval_screen")
    app, engine = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        engine.emit(approval("call-1"), approval("call-2"))
        await pilot.pause()
        assert isinstance(app.screen, approval_screen.ApprovalScreen)
        assert len(app.screen_stack) == 3
        assert "approvals 2" in app.main_screen.status.line and app.pending_approvals == 2
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, approval_screen.ApprovalScreen)
        await pilot.press("a")
        await app.workers.wait_for_complete()
        assert [op for op in engine.ops if op[0] in ("approve", "reject")] == [
            ("reject", "call-1", ""), ("approve", "call-2", True)]
        assert app.screen is app.main_screen


async def test_palette_commands_fit_the_state_and_change_the_approval_mode() -> None:
    app, engine = make_app(RecordingEngine(whole_run()))
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        provider = DevAgentCommands(app.main_screen)
        names = [name for name, _, _ in provider._commands()]
        assert "Approval mode: ask" not in names
        assert {"Resume session…", "Undo last change", "Redo change", "Approval mode: auto-edit",
                "Approval mode: full-auto", "Copy last answer", "Toggle diff full screen"} <= set(names)
        callback = next(cb for name, cb, _ in provider._commands() if name == "Approval mode: full-auto")
        callback()
        await pilot.pause()
        assert ("set_approval_mode", "full-auto") in engine.ops
        assert "full-auto" in app.main_screen.status.line


async def test_copy_last_answer_uses_the_clipboard() -> None:
    app, _ = make_app(RecordingEngine(whole_run()))
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        app.copy_last_answer()
        await pilot.pause()
        assert app.clipboard == ANSWER
        assert f"copied {len(ANSWER)} characters" in notices(app)


async def test_session_picker_opens_the_chosen_session() -> None:
    session_picker = pytest.importorskip("tui.screens.session_picker")
    opened: list[str] = []

    async def open_session(session_id: str) -> None:
        opened.append(session_id)

    class Row:
        id, title, workspace, model, updated, status = "abc123", "fix the add function", "/work/ws", "qwen", 0.0, "done"
        event_count, other_workspace, broken, problem = 12, False, False, ""

    app, _ = make_app(sessions_provider=lambda: [Row()], on_open_session=open_session)
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        await pilot.press("ctrl+r")
        await wait_for_screen(pilot, session_picker.SessionPickerScreen)
        await pilot.pause()
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        assert opened == ["abc123"]


async def test_unfinished_stream_is_finalised_when_the_run_ends() -> None:
    app, engine = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        engine.emit(AssistantDelta(message_id="m1", text="partial "), AssistantDelta(message_id="m1", text="answer"))
        await pilot.pause(0.3)
        engine.emit(RunFinished(status="cancelled"))
        await pilot.pause(0.2)
        transcript = app.main_screen.transcript
        assert not transcript.query(".streaming")
        assert "partial answer" in transcript.query_one(".assistant-message", Static).content.markup
        assert "run interrupted" in [str(w.render()) for w in transcript.query(".note")]


async def test_quit_closes_the_engine() -> None:
    app, engine = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        await pilot.press("ctrl+q")
    assert ("close",) in engine.ops


async def test_an_approval_decided_elsewhere_closes_its_modal_without_an_op() -> None:
    approval_screen = pytest.importorskip("tui.screens.approval_screen")
    app, engine = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        engine.emit(approval("call-1"))
        await pilot.pause()
        assert isinstance(app.screen, approval_screen.ApprovalScreen)
        engine.emit(ApprovalDecided(call_id="call-1", decision="approve"))
        await pilot.pause()
        assert app.screen is app.main_screen
        assert not [op for op in engine.ops if op[0] in ("approve", "reject")]
        assert "approvals" not in app.main_screen.status.line


async def test_without_a_session_the_picker_opens_first() -> None:
    session_picker = pytest.importorskip("tui.screens.session_picker")

    async def open_session(session_id: str) -> None:
        raise AssertionError("nothing was chosen")

    app = DevAgentApp(engine_factory=None, sessions_provider=list, on_open_session=open_session,
                      open_session_picker=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_screen(pilot, session_picker.SessionPickerScreen)
        assert "no session open" in app.main_screen.status.line


async def test_a_failing_op_is_a_notification_not_a_crash() -> None:
    engine = RecordingEngine()

    async def undo() -> None:
        raise ValueError("nothing to undo [checkpoints empty]")

    engine.undo = undo  # type: ignore[method-assign]
    app, _ = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        await pilot.press("ctrl+z")
        await started(app, pilot)
        assert "nothing to undo [checkpoints empty]" in notices(app)
        assert app.is_running


async def test_opening_another_session_closes_the_engine_and_replays_the_new_one() -> None:
    first, second = RecordingEngine(whole_run()), RecordingEngine([*session_start(), UserMessage(text="other goal")])
    app, _ = make_app(first)

    async def open_second() -> RecordingEngine:
        return second

    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        await app.open_engine(open_second)
        await started(app, pilot)
        screen = app.main_screen
        assert ("close",) in first.ops and app.engine is second
        assert [str(w.render()) for w in screen.transcript.query(".user-message")] == ["other goal"]
        assert not screen.transcript.query(".assistant-message")
        assert screen.diff.border_title == "Diff" and str(screen.plan.render()) == "no plan yet"
        assert app.last_answer == ""


async def test_typing_a_message_prepares_the_engine_for_its_first_run() -> None:
    app, engine = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        assert ("prepare_run",) not in engine.ops
        await pilot.press("h", "i")
        assert engine.ops.count(("prepare_run",)) == 2  # every change asks; the engine prepares once
