"""Notices and approval-mode changes from the engine are shown, live and on replay."""

from __future__ import annotations

from core.events import ApprovalModeChanged, Notice
from tests.tui.engine_double import RecordingEngine, make_app, session_start
from tests.tui.test_app_pilot import SIZE, started


async def test_notice_reaches_the_transcript_and_mode_change_the_status_bar() -> None:
    engine = RecordingEngine(session_start())
    app, engine = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        engine.emit(Notice(message="policies reloaded"), ApprovalModeChanged(mode="full-auto"))
        await pilot.pause()
        await pilot.pause()
        shown = " ".join(str(w.render()) for w in app.screen.query("Static"))
        assert "policies reloaded" in shown
        assert app.approval_mode == "full-auto"
        assert "full-auto" in str(app.screen.query_one("StatusBar").render())
