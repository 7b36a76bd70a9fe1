"""Resume builds light rows and measured answers: a call row is one widget until expanded; an answer renders once."""

from __future__ import annotations

from textual.widgets import Collapsible, Log, Static
from textual.widgets.collapsible import CollapsibleTitle

from core.events import AssistantMessage, ToolCallFinished, ToolCallRequested, ToolCallStarted
from tests.tui.engine_double import RecordingEngine, make_app, run_until_answer, session_start, whole_run
from tests.tui.test_app_pilot import SIZE, started
from tui.widgets.tool_call_list import REPLAY_ROWS, ToolCallRow


def many_calls(count: int) -> list:
    events = session_start()
    for n in range(count):
        call_id = f"call-{n}"
        arguments = f'{{"path": "src/file_{n}.py"}}'
        events += [ToolCallStarted(call_id=call_id, tool="read_file"),
                   ToolCallRequested(call_id=call_id, tool="read_file", arguments=arguments),
                   ToolCallFinished(call_id=call_id, tool="read_file", ok=True, duration_ms=5.0,
                                    output_preview=f"contents of file {n}", output_chars=20)]
    for seq, event in enumerate(events, 1):
        event.seq = seq
    return events


async def test_replayed_calls_are_one_widget_each_until_expanded() -> None:
    app, _ = make_app(RecordingEngine(many_calls(REPLAY_ROWS + 5)))
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        tools = app.main_screen.tools
        rows = list(tools.query(ToolCallRow))
        assert len(rows) == REPLAY_ROWS and not tools.query(Collapsible)
        assert str(rows[-1].render()).startswith("▶ ✓ read_file src/file_44.py  ok")
        rows[-1].focus()
        await pilot.press("enter")
        await pilot.pause()
        assert tools.expanded_call_ids() == [f"call-{REPLAY_ROWS + 4}"]
        expanded = tools.query_one(Collapsible)
        assert list(tools.children).index(expanded) == len(tools.children) - 1, "the row keeps its place"
        assert isinstance(app.focused, CollapsibleTitle) and app.focused.parent is expanded
        assert "contents of file 44" in list(expanded.query_one(".call-output", Log).lines)
        assert '"path": "src/file_44.py"' in str(expanded.query_one(".call-arguments", Static).render())
        await pilot.press("enter")
        await pilot.pause()
        assert tools.expanded_call_ids() == []


async def test_a_click_expands_a_row_and_status_updates_reach_it() -> None:
    app, engine = make_app(RecordingEngine(session_start()))
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        engine.emit(ToolCallStarted(call_id="c1", tool="run_command"),
                    ToolCallRequested(call_id="c1", tool="run_command", arguments='{"command": "pytest -q"}'))
        await pilot.pause()
        tools = app.main_screen.tools
        row = tools.query_one(ToolCallRow)
        engine.emit(ToolCallFinished(call_id="c1", tool="run_command", ok=True, duration_ms=1800.0,
                                     output_preview="3 passed", output_chars=8))
        await pilot.pause()
        assert "✓ run_command pytest -q  ok 1.8s" in str(row.render())
        await pilot.click(ToolCallRow)
        await pilot.pause()
        assert tools.expanded_call_ids() == ["c1"]
        assert "3 passed" in list(tools.query_one(".call-output", Log).lines)


async def test_a_replayed_answer_is_rendered_once_per_width() -> None:
    history = whole_run()
    history.append(AssistantMessage(seq=len(history) + 1, message_id="m-last", text="**done**\n\n- one\n- two\n"))
    app, _ = make_app(RecordingEngine(history))
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        answer = app.main_screen.transcript.query(".assistant-message").last()
        width = answer.content_region.width
        visual = answer.render()
        lines = visual.lines(width)
        answer.refresh(layout=True)  # Textual drops a widget's measured height on every refresh
        await pilot.pause()
        assert answer.render() is visual and visual.lines(width) is lines
        assert "• one" in "\n".join(line.text for line in lines)
        assert answer.content.markup.startswith("**done**")


async def test_a_live_row_is_laid_out_again_when_its_title_grows() -> None:
    app, engine = make_app(RecordingEngine(session_start()))
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        engine.busy = True
        engine.emit(*run_until_answer())  # edit_file starts without arguments; they and its result come next
        await pilot.pause(0.3)
        for row in app.main_screen.tools.query(ToolCallRow):
            shown = str(row.render())
            assert "ok" in shown
            assert row.size.width >= len(shown), f"the row is as wide as its new title: {shown!r}"


async def test_resume_paints_the_newest_messages_first_and_fills_in_the_older_ones() -> None:
    from core.events import UserMessage
    from tui.widgets.transcript import REPLAY_FIRST, REPLAY_MESSAGES

    events = session_start()
    for n in range(REPLAY_MESSAGES + 10):
        events += [UserMessage(text=f"question {n}"), AssistantMessage(message_id=f"m{n}", text=f"answer {n}")]
    for seq, event in enumerate(events, 1):
        event.seq = seq
    app, _ = make_app(RecordingEngine(events))
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        transcript = app.main_screen.transcript
        for _ in range(100):
            if not transcript.backfilling:
                break
            await pilot.pause(0.02)
        assert not transcript.backfilling
        shown = [str(w.content.markup) if hasattr(w.content, "markup") else str(w.content)
                 for w in transcript.children if w.id != "pruned-note"]
        assert len(shown) == REPLAY_MESSAGES > REPLAY_FIRST
        expected = [text for n in range(30, REPLAY_MESSAGES + 10) for text in (f"question {n}", f"answer {n}")]
        assert shown == expected[-REPLAY_MESSAGES:], "older messages are filled in above, in order"
        assert "earlier messages are not shown" in str(transcript.query_one("#pruned-note", Static).content)


def questions_and_answers(count: int) -> list:
    from core.events import UserMessage

    events = session_start()
    for n in range(count):
        events += [UserMessage(text=f"question {n}"),
                   AssistantMessage(message_id=f"m{n}", text=f"answer **{n}**\n\n- one\n- two\n")]
    for seq, event in enumerate(events, 1):
        event.seq = seq
    return events


async def until_filled_in(pilot, transcript) -> None:
    for _ in range(200):
        if not transcript.backfilling:
            break
        await pilot.pause(0.02)
    assert not transcript.backfilling
    await pilot.pause()


async def test_older_replayed_answers_are_rendered_only_at_the_width_they_are_laid_out_at() -> None:
    from tui.widgets.transcript import REPLAY_MESSAGES, _Answer

    app, _ = make_app(RecordingEngine(questions_and_answers(REPLAY_MESSAGES)))
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        transcript = app.main_screen.transcript
        await until_filled_in(pilot, transcript)
        answers = list(transcript.query(_Answer))
        assert len(answers) == REPLAY_MESSAGES // 2
        for answer in answers:
            visual = answer.render()
            assert list(visual._lines) == [answer.content_region.width], "rendered before mounting, at its width"


async def test_a_replay_arriving_while_older_messages_fill_in_goes_below_them() -> None:
    from tui.widgets.transcript import REPLAY_MESSAGES

    app, _ = make_app(RecordingEngine(questions_and_answers(REPLAY_MESSAGES)))
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        transcript = app.main_screen.transcript
        transcript.clear()
        transcript.begin_replay()
        for n in range(REPLAY_MESSAGES):
            transcript.add_user_message(f"old {n}")
        transcript.end_replay()
        assert transcript.backfilling
        # The engine, once up, replays what came after the log shown (the history preview).
        transcript.begin_replay()
        transcript.add_user_message("new")
        transcript.end_replay()
        await until_filled_in(pilot, transcript)
        shown = [str(w.render()) for w in transcript.query(".user-message")]
        assert shown == [f"old {n}" for n in range(REPLAY_MESSAGES)] + ["new"]


def runs_with_usage_and_modes() -> list:
    from core.events import ApprovalModeChanged, PlanStep, PlanUpdated, RunFinished, RunStarted, Usage

    events = session_start()
    events += [RunStarted(run_id="r1", goal="one", approval_mode="ask"),
               PlanUpdated(steps=[PlanStep(title="first plan", status="done")]),
               Usage(total_tokens=1200, context_used=900, context_limit=32768),
               RunFinished(run_id="r1", status="done"),
               ApprovalModeChanged(mode="auto-edit"),
               RunStarted(run_id="r2", goal="two", approval_mode="auto-edit"),
               PlanUpdated(steps=[PlanStep(title="second plan", status="in_progress")]),
               Usage(total_tokens=2500, context_used=1800),  # no limit: the earlier one stays
               RunFinished(run_id="r2", status="done"),
               ApprovalModeChanged(mode="full-auto")]
    for seq, event in enumerate(events, 1):
        event.seq = seq
    return events


async def test_replay_applies_only_the_last_of_each_overwriting_event_and_shows_what_live_events_showed() -> None:
    history = runs_with_usage_and_modes()
    replayed, _ = make_app(RecordingEngine(history))
    async with replayed.run_test(size=SIZE) as pilot:
        await started(replayed, pilot)
        after_replay = (replayed.main_screen.status.line, str(replayed.main_screen.plan.render()),
                        replayed.approval_mode)
    live, engine = make_app(RecordingEngine())
    async with live.run_test(size=SIZE) as pilot:
        await started(live, pilot)
        engine.emit(*history)
        await pilot.pause()
        # A replayed run was not timed here: only live runs show the last turn's time.
        line = live.main_screen.status.line.replace(" │ last turn 0:00", "")
        after_live = (line, str(live.main_screen.plan.render()), live.approval_mode)
    assert after_replay == after_live
    assert "tokens 2.5k · ctx 1.8k/32.8k" in after_replay[0] and "full-auto" in after_replay[0]


async def test_a_replay_freezes_what_is_alive_until_another_session_is_opened_or_the_app_ends() -> None:
    import gc

    app, _ = make_app(RecordingEngine(whole_run()))
    other = RecordingEngine(whole_run())

    async def other_session() -> RecordingEngine:
        return other

    try:
        async with app.run_test(size=SIZE) as pilot:
            await started(app, pilot)
            assert gc.get_freeze_count() > 0, "the first session's replay froze the objects alive then"
            await app.open_engine(other_session)
            await started(app, pilot)
            assert app.engine is other
            assert gc.get_freeze_count() == 0, "the closed session's objects can be collected"
        assert gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()


async def test_objects_a_replay_froze_are_unfrozen_when_the_app_ends() -> None:
    import gc

    app, _ = make_app(RecordingEngine(whole_run()))
    try:
        async with app.run_test(size=SIZE) as pilot:
            await started(app, pilot)
            assert gc.get_freeze_count() > 0
        assert gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()
