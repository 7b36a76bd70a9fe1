"""A long streamed answer is shown as finished pieces plus one bounded live tail; the pieces stay when final."""

from __future__ import annotations

from textual.widget import Widget

from core.events import AssistantDelta, AssistantMessage
from tests.tui.engine_double import RecordingEngine, make_app, session_start
from tests.tui.test_app_pilot import SIZE, started
from tui.widgets.transcript import SEGMENT_CHARS, Transcript

LINES = [f"line {i} of a long answer that keeps streaming" for i in range(400)]
TEXT = "\n\n".join(LINES) + "\n"


def source(widget: Widget) -> str:
    return widget.content.markup  # an answer's content is a rich Markdown: `.markup` is its source


async def stream(engine: RecordingEngine, pilot: object, text: str) -> None:
    for start in range(0, len(text), 1000):
        engine.emit(AssistantDelta(message_id="m1", text=text[start:start + 1000]))
        await pilot.pause(0.12)  # let each batch flush (the transcript writes at most ~10 times a second)
    await pilot.pause(0.2)


async def settled(transcript: Transcript, pilot: object) -> None:
    for _ in range(50):
        await pilot.pause(0.02)
        if not transcript.query(".streaming"):
            return


async def test_long_stream_is_shown_in_bounded_pieces_and_they_stay_when_final() -> None:
    assert len(TEXT) > 3 * SEGMENT_CHARS
    app, engine = make_app(RecordingEngine(session_start()))
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        transcript = app.main_screen.transcript
        await stream(engine, pilot, TEXT)
        frozen = list(transcript.query(".assistant-message"))
        assert len(frozen) >= 3, "long streamed text is cut into finished pieces"
        assert all(len(source(w)) <= SEGMENT_CHARS for w in frozen)
        live = list(transcript.query(".streaming"))
        assert len(live) == 1 and len(source(live[0])) <= SEGMENT_CHARS
        assert "".join(source(w) for w in [*frozen, live[0]]) == TEXT, "pieces cut at blank lines add up"
        engine.emit(AssistantMessage(message_id="m1", text=TEXT))
        await settled(transcript, pilot)
        finals = list(transcript.query(".assistant-message"))
        assert not transcript.query(".streaming")
        assert finals[:len(frozen)] == frozen, "the finished pieces are kept, not rendered again"
        assert "".join(source(w) for w in finals) == TEXT


async def test_a_final_text_unlike_the_stream_replaces_every_piece() -> None:
    app, engine = make_app(RecordingEngine(session_start()))
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        transcript = app.main_screen.transcript
        await stream(engine, pilot, TEXT)
        assert len(transcript.query(".assistant-message")) >= 3
        final = TEXT.replace("line 399", "the last line")
        engine.emit(AssistantMessage(message_id="m1", text=final))
        await settled(transcript, pilot)
        finals = list(transcript.query(".assistant-message"))
        assert [source(w) for w in finals] == [final]
        assert not transcript.query(".streaming")


async def test_a_code_block_cut_in_two_is_closed_and_reopened() -> None:
    code = "```python\n" + "".join(f"print({i})  # a line of a long listing\n" for i in range(400)) + "```\n"
    app, engine = make_app(RecordingEngine(session_start()))
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        transcript = app.main_screen.transcript
        await stream(engine, pilot, "Here it is:\n\n" + code)
        pieces = [source(w) for w in transcript.query(".assistant-message, .streaming")]
        assert len(pieces) >= 3
        for piece in pieces[1:]:
            assert piece.startswith("```python\n"), "every later piece reopens the fence"
        for piece in pieces[1:-1]:
            assert piece.endswith("```\n"), "every finished piece closes it"
        body = "".join(pieces).replace("```\n```python\n", "")
        assert body == "Here it is:\n\n" + code
