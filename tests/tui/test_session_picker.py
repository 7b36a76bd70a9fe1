"""Pilot tests for the session picker: listing, filtering, keys, marks for other and broken sessions, 1,000 rows."""

from __future__ import annotations

import re
from dataclasses import dataclass

from textual.app import App
from textual.widgets import Input, Static

from tui.screens.session_picker import SessionPickerScreen, SessionTable, relative_time, shorten_path

NOW = 1_790_000_000.0
WORKSPACE = "/work/ws"
SIZE = (120, 40)


@dataclass
class Row:
    """Stands in for the session store's SessionSummary."""

    id: str
    title: str
    workspace: str = WORKSPACE
    model: str | None = "qwen3-coder-30b"
    updated: float = NOW - 120
    status: str = "done"
    event_count: int = 10
    other_workspace: bool = False
    broken: bool = False
    problem: str = ""


def sample_rows() -> list[Row]:
    return [
        Row("a1b2c3", "Fix the failing login test", status="running", event_count=42),
        Row("d4e5f6", "Add a --json flag to the export command", updated=NOW - 3 * 3600, status="paused"),
        Row("g7h8i9", "", model=None, updated=NOW - 30, status="new", event_count=1),
        Row(
            "j1k2l3",
            "Refactor the [config] loader",
            workspace="/srv/other-service",
            model="gpt-oss-20b",
            updated=NOW - 26 * 3600,
            other_workspace=True,
            event_count=311,
        ),
        Row("m4n5o6", "Upgrade pydantic", updated=NOW - 5 * 86400, status="failed", event_count=77),
        Row("p7q8r9", "Write the README", updated=NOW - 10 * 86400, status="interrupted", event_count=23),
        Row("s1t2u3", "Speed up the test suite", updated=NOW - 40 * 60, status="cancelled", event_count=9),
        Row(
            "v4w5x6",
            "Port the CLI to click",
            model=None,
            updated=NOW - 3 * 86400,
            status="broken",
            event_count=0,
            broken=True,
            problem="events.jsonl line 12 is not JSON",
        ),
    ]


class PickerHost(App[None]):
    """Pushes one picker on mount and collects what it dismisses with."""

    def __init__(self, screen: SessionPickerScreen) -> None:
        super().__init__()
        self.picker = screen
        self.results: list[str | None] = []

    def on_mount(self) -> None:
        self.push_screen(self.picker, self.results.append)


def make_picker(rows: list[object] | None = None) -> SessionPickerScreen:
    return SessionPickerScreen(sample_rows() if rows is None else rows, current_workspace=WORKSPACE, now=lambda: NOW)


def screen_lines(picker: SessionPickerScreen) -> list[str]:
    """The table as drawn: its heading, then one line per row on screen, without the padding at the right."""
    table = picker.query_one(SessionTable)
    return [table.render_line(y).text.rstrip() for y in range(table.scrollable_content_region.height)]


def table_text(picker: SessionPickerScreen) -> list[str]:
    """The rows on screen, their cells (columns are at least two spaces apart) joined by ` | `."""
    return [" | ".join(re.split(r"\s{2,}", line.strip())) for line in screen_lines(picker)[1:] if line]


async def test_rows_are_listed_with_their_columns() -> None:
    app = PickerHost(make_picker())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        rows = table_text(app.picker)
        heading = screen_lines(app.picker)[0]
    assert heading.split() == ["title", "workspace", "model", "updated", "status", "events"]
    assert len(rows) == 8
    assert rows[0] == "Fix the failing login test | /work/ws | qwen3-coder-30b | 2 min ago | ● running | 42"
    assert "⏸ paused for approval" in rows[1] and "3 h ago" in rows[1]
    assert rows[2].startswith("(no goal yet) | /work/ws | — | just now | ○ new")
    assert "yesterday" in rows[3]
    assert "40 min ago" in rows[6]


async def test_other_workspace_and_broken_rows_are_marked() -> None:
    app = PickerHost(make_picker())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        rows = table_text(app.picker)
    assert rows[3].split(" | ")[1] == "↗ /srv/other-service"
    assert "✗ broken: events.jsonl" in rows[7]


async def test_other_workspace_is_worked_out_when_the_row_does_not_say() -> None:
    @dataclass
    class Bare:
        id: str
        title: str
        workspace: str

    app = PickerHost(make_picker([Bare("x1", "elsewhere", "/srv/else"), Bare("x2", "here", WORKSPACE)]))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        rows = table_text(app.picker)
    assert rows[0].split(" | ")[1] == "↗ /srv/else"
    assert rows[1].split(" | ")[1] == WORKSPACE
    assert rows[1].endswith("| — | · unknown | 0")


async def test_typing_filters_by_title_or_id_case_insensitively() -> None:
    app = PickerHost(make_picker())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press(*"README")
        await pilot.pause()
        assert app.picker.shown_ids == ["p7q8r9"]
        filter_input = app.picker.query_one(Input)
        filter_input.value = "readme"
        await pilot.pause()
        assert app.picker.shown_ids == ["p7q8r9"]
        filter_input.value = "d4e5"
        await pilot.pause()
        assert app.picker.shown_ids == ["d4e5f6"]
        await pilot.press(*["backspace"] * 4)
        await pilot.pause()
        assert len(app.picker.shown_ids) == 8


async def test_a_filter_matching_nothing_says_so() -> None:
    app = PickerHost(make_picker())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press(*"zzz", "enter")
        await pilot.pause()
        empty = app.picker.query_one("#picker-empty", Static)
        assert empty.display
        assert str(empty.visual.plain) == "no session matches the filter"
        assert app.results == []


async def test_up_down_enter_returns_the_highlighted_id() -> None:
    app = PickerHost(make_picker())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("down", "down", "down", "up")
        await pilot.pause()
        assert app.picker.highlighted_id == "g7h8i9"
        await pilot.press("enter")
        await pilot.pause()
    assert app.results == ["g7h8i9"]


async def test_up_at_the_top_stays_on_the_first_row() -> None:
    app = PickerHost(make_picker())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("up", "enter")
        await pilot.pause()
    assert app.results == ["a1b2c3"]


async def test_enter_right_after_a_burst_of_typing_uses_the_new_filter() -> None:
    app = PickerHost(make_picker())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        filter_input = app.picker.query_one(Input)
        for character in "readme":
            filter_input.insert_text_at_cursor(character)
        await pilot.press("enter")
        await pilot.pause()
    assert app.results == ["p7q8r9"]


async def test_enter_after_filtering_opens_the_match() -> None:
    app = PickerHost(make_picker())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press(*"pydantic", "enter")
        await pilot.pause()
    assert app.results == ["m4n5o6"]


async def test_enter_in_the_table_opens_the_row() -> None:
    app = PickerHost(make_picker())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("tab")
        assert app.focused is app.picker.query_one(SessionTable)
        await pilot.press("down", "enter")
        await pilot.pause()
    assert app.results == ["d4e5f6"]


async def test_broken_sessions_can_be_selected() -> None:
    app = PickerHost(make_picker())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press(*"click", "enter")
        await pilot.pause()
    assert app.results == ["v4w5x6"]


async def test_escape_returns_none() -> None:
    app = PickerHost(make_picker())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("down", "escape")
        await pilot.pause()
    assert app.results == [None]


async def test_no_sessions_shows_a_friendly_line() -> None:
    app = PickerHost(make_picker([]))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        empty = app.picker.query_one("#picker-empty", Static)
        assert empty.display
        assert str(empty.visual.plain) == "no sessions yet"
        await pilot.press("enter")
        await pilot.pause()
        assert app.results == []


async def test_a_thousand_sessions_load_newest_first_and_the_filter_reaches_all() -> None:
    rows = [Row(f"s{n:04d}", f"goal number {n}", updated=NOW - n * 60) for n in range(1000)]
    app = PickerHost(make_picker(rows))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert len(app.picker.shown_ids) == 100
        assert app.picker.shown_ids[:2] == ["s0000", "s0001"]
        assert "100 of 1000 shown" in str(app.picker.query_one("#picker-more", Static).visual.plain)
        app.picker.query_one(Input).value = "number 99"
        await pilot.pause()
        assert app.picker.shown_ids == ["s0099", *[f"s{n:04d}" for n in range(990, 1000)]]


def test_relative_time() -> None:
    assert relative_time(NOW - 5, NOW) == "just now"
    assert relative_time(NOW + 30, NOW) == "just now"
    assert relative_time(NOW - 3 * 60, NOW) == "3 min ago"
    assert relative_time(NOW - 2 * 3600 - 5, NOW) == "2 h ago"
    assert relative_time(NOW - 30 * 3600, NOW) == "yesterday"
    assert relative_time(NOW - 9 * 86400, NOW)[:4] == "2026"
    assert relative_time(float("nan"), NOW) == "—"
    assert relative_time(1e20, NOW) == "just now"
    assert relative_time(-1e20, NOW) == "—"


def test_shorten_path_keeps_the_last_component() -> None:
    assert shorten_path("/srv/a", 20) == "/srv/a"
    assert shorten_path("/srv/very/long/path/to/project", 12) == "…/project"
    assert shorten_path("/srv/averyveryverylongname", 10) == "…ylongname"


def numbered_rows(count: int) -> list[Row]:
    return [Row(f"s{n:04d}", f"goal number {n}", updated=NOW - n * 60) for n in range(count)]


async def test_page_keys_from_the_filter_move_a_screenful_and_keep_the_cursor_in_view() -> None:
    app = PickerHost(make_picker(numbered_rows(300)))
    async with app.run_test(size=(120, 24)) as pilot:
        await pilot.pause()
        table = app.picker.query_one(SessionTable)
        page = table.page_rows
        await pilot.press("pagedown")
        await pilot.pause()
        assert app.picker.highlighted_id == f"s{page:04d}"
        assert screen_lines(app.picker)[-1].startswith(f" goal number {page} ")
        await pilot.press("pagedown", "pageup", "up")
        await pilot.pause()
        assert app.picker.highlighted_id == f"s{page - 1:04d}"
        await pilot.press(*["pageup"] * 3)
        await pilot.pause()
        assert app.picker.highlighted_id == "s0000"
        assert screen_lines(app.picker)[1].startswith(" goal number 0 ")


async def test_home_and_end_in_the_table_reach_the_first_and_last_rows_listed() -> None:
    app = PickerHost(make_picker(numbered_rows(300)))
    async with app.run_test(size=(120, 24)) as pilot:
        await pilot.pause()
        await pilot.press("tab", "end")
        await pilot.pause()
        assert app.picker.highlighted_id == "s0099"
        lines = screen_lines(app.picker)
        assert lines[0].split() == ["title", "workspace", "model", "updated", "status", "events"]
        assert lines[-1].startswith(" goal number 99 ")
        await pilot.press("home", "down", "enter")
        await pilot.pause()
    assert app.results == ["s0001"]


async def test_a_click_highlights_a_row_and_a_click_on_the_highlighted_row_opens_it() -> None:
    app = PickerHost(make_picker())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        table = app.picker.query_one(SessionTable)
        await pilot.click(table, offset=(5, 0))  # the heading: nothing happens
        await pilot.click(table, offset=(5, 3))
        await pilot.pause()
        assert app.picker.highlighted_id == "g7h8i9"
        assert app.results == []
        await pilot.click(table, offset=(5, 20))  # below the last row: nothing happens
        await pilot.click(table, offset=(5, 3))
        await pilot.pause()
    assert app.results == ["g7h8i9"]


async def test_a_filter_that_reaches_a_wider_cell_widens_its_column() -> None:
    rows = numbered_rows(150)
    rows[120] = Row("wide01", "the wide one", workspace="/srv/x", model="m", status="interrupted")
    app = PickerHost(make_picker(rows))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert "interrupted" not in "\n".join(screen_lines(app.picker))
        await pilot.press(*"wide")
        await pilot.pause()
        assert table_text(app.picker) == ["the wide one | /srv/x | m | 2 min ago | ! interrupted | 10"]


async def test_opening_the_picker_parses_only_its_own_styles() -> None:
    """Its styles come as default CSS: a screen's CSS_PATH made Textual parse every stylesheet of the app again."""
    host: App[None] = App()
    reparses: list[None] = []
    async with host.run_test(size=SIZE) as pilot:
        await pilot.pause()
        original = host.stylesheet.reparse
        host.stylesheet.reparse = lambda: (reparses.append(None), original())[1]  # type: ignore[method-assign]
        host.push_screen(make_picker())
        await pilot.pause()
        assert isinstance(host.screen, SessionPickerScreen) and reparses == []
        table = host.screen.query_one(SessionTable)
        assert table.styles.height.is_fraction, "the picker's own stylesheet applies"
