"""Snapshots of the main screen (sync tests: snap_compare runs its own event loop); clock and ids are fixed."""

from __future__ import annotations

import contextlib

from textual.worker import WorkerFailed

from core.errors import EndpointError
from core.events import UserMessage
from tests.tui.engine_double import FIXED_CLOCK, RecordingEngine, make_app, run_until_answer, session_start, whole_run
from tui.app import DevAgentApp

SIZE = (120, 40)


async def settle(pilot) -> None:
    """Wait for the engine worker, stop the cursor blinking, and let batched stream writes land."""
    app = pilot.app
    with contextlib.suppress(WorkerFailed):
        await app.workers.wait_for_complete()
    app.main_screen.prompt.cursor_blink = False
    await pilot.pause(0.3)
    await pilot.pause()


def test_empty_start(snap_compare) -> None:
    app, _ = make_app(RecordingEngine(session_start()))
    assert snap_compare(app, terminal_size=SIZE, run_before=settle)


def test_streaming_in_progress(snap_compare) -> None:
    app, engine = make_app(RecordingEngine(session_start()))

    async def stream(pilot) -> None:
        await settle(pilot)
        engine.busy = True
        engine.emit(*run_until_answer())
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=stream)


def test_resumed_session(snap_compare) -> None:
    history = whole_run()
    history.append(UserMessage(seq=len(history) + 1, ts=FIXED_CLOCK, text="now add a test for sub()"))
    app, _ = make_app(RecordingEngine(history))
    assert snap_compare(app, terminal_size=SIZE, run_before=settle)


def test_endpoint_down_banner(snap_compare) -> None:
    async def unreachable() -> RecordingEngine:
        raise EndpointError("cannot reach the model endpoint at http://host.docker.internal:1234/v1",
                            kind="unreachable", hint="start LM Studio's local server, or set OPENAI_BASE_URL")

    app = DevAgentApp(engine_factory=unreachable, workspace_label="/work/ws", model_label="qwen2.5-coder-7b",
                      clock=lambda: FIXED_CLOCK)
    assert snap_compare(app, terminal_size=SIZE, run_before=settle)


def test_narrow_80x24_layout(snap_compare) -> None:
    app, _ = make_app(RecordingEngine(whole_run()))
    assert snap_compare(app, terminal_size=(80, 24), run_before=settle)
