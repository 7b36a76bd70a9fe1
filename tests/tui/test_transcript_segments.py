"""A long streamed answer is shown in bounded segments, then replaced by one final rendering."""

from __future__ import annotations

from textual.widgets import Markdown

from core.events import AssistantDelta, AssistantMessage
from tests.tui.engine_double import RecordingEngine, make_app, session_start
from tests.tui.test_app_pilot import SIZE, started
from tui.widgets.transcript import SEGMENT_CHARS


async def test_long_stream_freezes_segments_and_the_final_message_replaces_them() -> None:
    lines = [f"line {i} of a long answer that keeps streaming" for i in range(400)]
    text = "\n".join(lines) + "\n"
    assert len(text) > 3 * SEGMENT_CHARS
    app, engine = make_app(RecordingEngine(session_start()))
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        transcript = app.main_screen.transcript
        for start in range(0, len(text), 1000):
            engine.emit(AssistantDelta(message_id="m1", text=text[start:start + 1000]))
            await pilot.pause(0.12)  # let each batch flush (the transcript writes at most ~10 times a second)
        await pilot.pause(0.2)
        frozen = transcript.query(".assistant-message")
        assert len(frozen) >= 2, "long streamed text is frozen into segments"
        live = [m for m in transcript.query(Markdown) if m.has_class("streaming")]
        assert len(live) == 1 and len(live[0].source) <= SEGMENT_CHARS + 1000
        shown = "".join(w.content.markup for w in frozen) + live[0].source
        assert "line 0 of" in shown and "line 399 of" in shown
        engine.emit(AssistantMessage(message_id="m1", text=text))
        for _ in range(50):
            await pilot.pause(0.02)
            if not [m for m in transcript.query(Markdown) if m.has_class("streaming")]:
                break
        finals = transcript.query(".assistant-message")
        assert len(finals) == 1, "one final rendering replaces every segment"
        assert not [m for m in transcript.query(Markdown) if m.has_class("streaming")]
