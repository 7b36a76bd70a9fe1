"""The key footer is not rebuilt while another screen covers the main one, and is right again after."""

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
    return " ".join(str(key.render()) for key in footer.children)


async def test_footer_waits_while_covered_and_catches_up_after() -> None:
    app, _ = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        footer = app.main_screen.query_one(KeyFooter)
        assert "Sessions" in footer_text(footer)
        rebuilds: list[int] = []
        original = footer.recompose

        async def counting_recompose() -> None:
            rebuilds.append(1)
            await original()

        footer.recompose = counting_recompose  # type: ignore[method-assign]
        await app.push_screen(Cover())
        await pilot.pause(0.2)
        assert rebuilds == [], "no rebuild of a footer nobody sees"
        await pilot.press("escape")
        await pilot.pause(0.2)
        assert app.screen is app.main_screen
        assert len(rebuilds) == 1, "one rebuild when the main screen is back"
        assert "Sessions" in footer_text(footer) and "Undo change" in footer_text(footer)
