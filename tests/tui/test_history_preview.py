"""Resuming shows the session's recorded events at once; the engine, when it is up, adds only what is new."""

from __future__ import annotations

import asyncio

from textual.widgets import Static

from core.events import Notice, SessionResumed
from tests.tui.engine_double import RecordingEngine, make_app, run_end, run_until_answer, session_start
from tests.tui.test_app_pilot import SIZE
from tui.app import DevAgentApp


def recorded() -> list:
    events = session_start() + run_until_answer(start=3) + run_end(start=30)
    for seq, event in enumerate(events, 1):
        event.seq = seq
    return events


def texts(app: DevAgentApp) -> list[str]:
    out = []
    for widget in app.main_screen.transcript.children:
        if widget.id == "pruned-note" or not isinstance(widget, Static):
            continue
        content = widget.content
        out.append(str(content.markup) if hasattr(content, "markup") else str(content))
    return out


async def test_history_shows_before_the_engine_and_is_not_repeated_after() -> None:
    history = recorded()
    engine = RecordingEngine([*history, SessionResumed(seq=len(history) + 1, pid=1, client="tui"),
                              Notice(seq=len(history) + 2, message="policies reloaded")])
    release = asyncio.Event()

    async def slow_start() -> RecordingEngine:
        await release.wait()  # the SDK import and endpoint check take seconds on a cold start
        return engine

    app, _ = make_app(engine, history_provider=lambda: history)
    app._engine_factory = slow_start
    async with app.run_test(size=SIZE) as pilot:
        for _ in range(100):
            await pilot.pause(0.02)
            if any("I fixed `add`" in text for text in texts(app)):
                break
        assert app.engine is None, "the history is shown while the engine is still starting"
        before = texts(app)
        assert "fix the add function" in before and any("I fixed `add`" in text for text in before)
        assert app.main_screen.tools.row_text("call-1").startswith("✓ edit_file")
        release.set()
        for _ in range(100):
            await pilot.pause(0.02)
            if app.engine is not None and "policies reloaded" in texts(app):
                break
        after = texts(app)
        assert after[:len(before)] == before, "what was shown stays as it was"
        assert after[len(before):] == ["session resumed", "policies reloaded"], "only the new events are added"


async def test_a_failing_history_read_leaves_the_start_to_the_engine() -> None:
    def broken() -> list:
        raise OSError("unreadable")

    app, _ = make_app(RecordingEngine(recorded()), history_provider=broken)
    async with app.run_test(size=SIZE) as pilot:
        for _ in range(100):
            await pilot.pause(0.02)
            if app.engine is not None:
                break
        await pilot.pause(0.1)
        assert sum(text == "fix the add function" for text in texts(app)) == 1
