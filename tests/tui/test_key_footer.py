"""The key footer: the screen's keys on one line, pressed by a click, and not rebuilt while a modal covers it."""

from __future__ import annotations

from textual.screen import Screen
from textual.widgets import Static

from tests.tui.engine_double import make_app
from tests.tui.test_app_pilot import SIZE, started
from tui.widgets.key_footer import KeyFooter


class Cover(Screen[None]):
    BINDINGS = [("escape", "app.pop_screen", "Back")]

    def compose(self):
        yield Static("covering the main screen")


def footer_text(footer: KeyFooter) -> str:
    return footer.render().plain


def offset_of(footer: KeyFooter, label: str) -> tuple[int, int]:
    """Where a label is on the footer's line, as a click offset within the widget."""
    return footer_text(footer).index(label), 0


async def test_the_line_shows_the_focused_widgets_keys_then_the_screens_and_the_palette_at_the_right() -> None:
    app, _ = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        text = footer_text(app.main_screen.query_one(KeyFooter))
    assert text.startswith(" ^z Undo change  ^y Redo change  ⏎ Send  esc Interrupt  ^r Sessions ")
    assert "^q Quit" in text and "Retry" not in text  # f5/r Retry is a hidden binding until the engine fails
    assert len(text) == SIZE[0] and text.endswith("▏^p palette ")


async def test_a_click_on_a_key_presses_it() -> None:
    app, _ = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        footer = app.main_screen.query_one(KeyFooter)
        opened: list[int] = []
        app.action_open_sessions = lambda: opened.append(1)  # type: ignore[method-assign]
        await pilot.click(KeyFooter, offset=offset_of(footer, "Sessions"))
        await pilot.pause(0.2)
        assert opened == [1]
        await pilot.click(KeyFooter, offset=(footer_text(footer).index("▏") - 2, 0))  # the blank before the palette
        await pilot.pause(0.2)
        assert opened == [1]


async def test_hovering_a_key_highlights_it_only() -> None:
    app, _ = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        footer = app.main_screen.query_one(KeyFooter)
        plain = footer.render()
        await pilot.hover(KeyFooter, offset=offset_of(footer, "Interrupt"))
        await pilot.pause()
        hovered = footer.render()
        start = footer_text(footer).index(" esc ")
        changed = {x for x in range(len(plain.plain))
                   if plain.get_style_at_offset(app.console, x) != hovered.get_style_at_offset(app.console, x)}
        assert changed == set(range(start, start + len(" esc Interrupt "))), changed


async def test_footer_waits_while_covered_and_catches_up_after() -> None:
    app, _ = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        footer = app.main_screen.query_one(KeyFooter)
        assert "Sessions" in footer_text(footer)
        rebuilds: list[int] = []
        original = footer._rebuild

        def counting_rebuild() -> None:
            rebuilds.append(1)
            original()

        footer._rebuild = counting_rebuild  # type: ignore[method-assign]
        await app.push_screen(Cover())
        await pilot.pause(0.2)
        assert rebuilds == [], "no rebuild of a footer nobody sees"
        await pilot.press("escape")
        await pilot.pause(0.2)
        assert app.screen is app.main_screen
        assert len(rebuilds) == 1, "one rebuild when the main screen is back"
        assert "Sessions" in footer_text(footer) and "Undo change" in footer_text(footer)
