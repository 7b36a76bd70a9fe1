"""The input box's cursor stops blinking when nothing is typed for a while (an idle app must not repaint)."""

from __future__ import annotations

import pytest

from tests.tui.engine_double import make_app
from tui.widgets import prompt_input

SIZE = (120, 40)


async def wait_until(pilot, condition, what: str) -> None:
    for _ in range(250):
        if condition():
            return
        await pilot.pause(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def test_the_cursor_stops_blinking_when_idle_and_blinks_again_on_input(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prompt_input, "BLINK_FOR_S", 1.0)
    app, _engine = make_app()
    async with app.run_test(size=SIZE) as pilot:
        prompt = app.main_screen.prompt
        assert prompt.has_focus
        await wait_until(pilot, lambda: not prompt.cursor_blink, "the blinking to stop")
        await pilot.press("h")
        assert prompt.cursor_blink and prompt.text == "h"
        await wait_until(pilot, lambda: not prompt.cursor_blink, "the blinking to stop again")


async def test_blinking_turned_off_by_choice_stays_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prompt_input, "BLINK_FOR_S", 1.0)
    app, _engine = make_app()
    async with app.run_test(size=SIZE) as pilot:
        prompt = app.main_screen.prompt
        await pilot.press("h")
        assert prompt.cursor_blink
        prompt.cursor_blink = False
        await pilot.pause(1.5)
        await pilot.press("i")
        assert not prompt.cursor_blink and prompt.text == "hi"
