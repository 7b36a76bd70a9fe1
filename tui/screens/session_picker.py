"""The session picker: a filterable list of recorded sessions; dismisses with the chosen session id or None."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import ClassVar, Protocol

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.geometry import Region, Size
from textual.message import Message
from textual.screen import ModalScreen
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Input, Static

NO_GOAL = "(no goal yet)"
MAX_ROWS = 100
COLUMNS = ("title", "workspace", "model", "updated", "status", "events")
MODEL_WIDTH = 16
# Below this many cells the model column is left out so that status and events stay on screen.
NARROW_WIDTH = 110
NARROW_WORKSPACE_WIDTH = 10
STATUS_WIDTH = 24
# Cells outside title and workspace at their widest: updated (10), status, events (6), cell padding and the
# dialog frame; the title then takes whatever the other columns leave.
FIXED_WIDTH = 10 + STATUS_WIDTH + 6 + 10 + 6
FRAME_WIDTH = 6
CELL_PADDING = 2
# Columns whose cells are right-aligned.
RIGHT_ALIGNED = frozenset({"events"})
OTHER_MARK = "↗ "

# Status -> (mark, label, theme variable for its colour ("" shows it dimmed), bold).
STATUS_LOOK: dict[str, tuple[str, str, str, bool]] = {
    "new": ("○", "new", "", False),
    "running": ("●", "running", "text-primary", False),
    "paused": ("⏸", "paused for approval", "text-warning", True),
    "done": ("✓", "done", "text-success", False),
    "failed": ("✗", "failed", "text-error", False),
    "interrupted": ("!", "interrupted", "text-warning", False),
    "cancelled": ("–", "cancelled", "", False),
    "broken": ("✗", "broken", "text-error", True),
}


class PickerRow(Protocol):
    """What the picker reads from a session summary (missing attributes fall back to harmless defaults)."""

    id: str
    title: str
    workspace: str
    model: str | None
    updated: float
    status: str
    event_count: int
    other_workspace: bool
    broken: bool
    problem: str


def relative_time(then: float, now: float) -> str:
    """`just now`, `3 min ago`, `2 h ago`, `yesterday`, or a date for anything older (`—` if unreadable)."""
    if not math.isfinite(then):
        return "—"
    elapsed = max(0.0, now - then)
    if elapsed < 60:
        return "just now"
    if elapsed < 3600:
        return f"{int(elapsed // 60)} min ago"
    if elapsed < 86400:
        return f"{int(elapsed // 3600)} h ago"
    if elapsed < 2 * 86400:
        return "yesterday"
    try:
        return datetime.fromtimestamp(then).strftime("%Y-%m-%d")
    except (OverflowError, OSError, ValueError):
        return "—"


def shorten_path(path: str, width: int, home: str | None = None) -> str:
    """The path with the home directory as `~`, keeping its last components (`…/name`) to fit `width` cells."""
    home = str(Path.home()) if home is None else home
    if home != "/" and (path == home or path.startswith(home + "/")):
        path = "~" + path[len(home) :]
    if len(path) <= width:
        return path
    tail = path.rstrip("/").rsplit("/", 1)[-1]
    if len(tail) + 2 <= width:
        return "…/" + tail
    return "…" + path[-(width - 1) :]


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _status_look(status: str, problem: str) -> tuple[str, str, str, bool]:
    """A status's mark, label, colour variable and weight (a broken session's label says what is wrong)."""
    mark, label, variable, bold = STATUS_LOOK.get(status, ("·", status or "unknown", "", False))
    if status == "broken" and problem:
        label = _clip(f"broken: {problem}", STATUS_WIDTH - 2)
    return mark, label, variable, bold


def _status_style(status: str, colours: dict[str, str]) -> Style:
    _mark, _label, variable, bold = _status_look(status, "")
    colour = colours.get(variable, "") if variable else ""
    return Style(color=colour, bold=bold) if colour.startswith("#") else Style(dim=True, bold=bold)


Cell = tuple[str, Style]
"""A table cell: its text and the style laid over the row's."""

PLAIN = Style()


@dataclass
class _Entry:
    """One session, read once: its id, the text the filter searches, and its cells as plain text.

    Styled cells are built only for the rows the table draws: the filter searches every session, but only the
    rows on screen are ever styled.
    """

    session_id: str
    haystack: str
    title: str
    workspace: str
    other: bool
    model: str | None  # None: the model column is left out
    updated: str
    status: str
    problem: str
    events: str
    _cells: tuple[Cell, ...] | None = field(default=None, init=False, repr=False)

    def status_text(self) -> str:
        mark, label, _variable, _bold = _status_look(self.status, self.problem)
        return f"{mark} {label}"

    def widths(self) -> list[int]:
        """The cells' widths after the title."""
        model = [] if self.model is None else [cell_len(self.model)]
        return [cell_len(self.workspace), *model, len(self.updated), cell_len(self.status_text()), len(self.events)]

    def cells(self, title_width: int, colours: dict[str, str]) -> tuple[Cell, ...]:
        """Every cell of the row, the title cut to `title_width`."""
        if self._cells is None:
            title = (_clip(self.title, title_width), PLAIN) if self.title else (NO_GOAL, Style(italic=True, dim=True))
            workspace = (self.workspace, Style(italic=True) if self.other else PLAIN)
            model = () if self.model is None else ((self.model, PLAIN),)
            self._cells = (title, workspace, *model, (self.updated, PLAIN),
                           (self.status_text(), _status_style(self.status, colours)), (self.events, PLAIN))
        return self._cells


@dataclass(frozen=True)
class Column:
    """A column of the session table: its heading and its width in cells (padding not included)."""

    label: str
    width: int
    right: bool = False


class SessionTable(ScrollView, can_focus=True):
    """The sessions as a table drawn a line at a time: only the rows on screen are ever laid out or styled.

    A `DataTable` measured every cell it held before the first frame and drew each cell through Rich; here a
    row is one `Strip` of plain segments, built when it first comes into view and kept until the rows, the look
    or the cursor on it change. The heading stays on the first line while the rows scroll.
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "session-table--header",
        "session-table--even-row",
        "session-table--cursor",
        "session-table--hover",
    }

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "move(-1)", "previous", show=False),
        Binding("down", "move(1)", "next", show=False),
        Binding("pageup", "page(-1)", "page up", show=False),
        Binding("pagedown", "page(1)", "page down", show=False),
        Binding("home", "jump(0)", "first", show=False),
        Binding("end", "jump(-1)", "last", show=False),
        Binding("enter", "choose", "open session", show=False),
    ]

    class Chosen(Message):
        """A row was chosen: `enter` on it, or a click on the highlighted row."""

        def __init__(self, table: SessionTable, row: int) -> None:
            super().__init__()
            self.table = table
            self.row = row

        @property
        def control(self) -> SessionTable:
            return self.table

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._columns: tuple[Column, ...] = ()
        self._row_count = 0
        self._cells_of: Callable[[int], Sequence[Cell]] = lambda row: ()
        self._cursor = 0
        self._hover = -1
        self._strips: dict[tuple[int, int], Strip] = {}
        self._look: object = None

    @property
    def cursor_row(self) -> int:
        """The highlighted row (0 when the table is empty)."""
        return self._cursor

    @property
    def row_count(self) -> int:
        return self._row_count

    @property
    def columns(self) -> tuple[Column, ...]:
        return self._columns

    @property
    def page_rows(self) -> int:
        """How many rows fit under the heading."""
        return max(1, self.scrollable_content_region.height - 1)

    def set_columns(self, columns: Sequence[Column]) -> None:
        self._columns = tuple(columns)
        self._changed()

    def show(self, row_count: int, cells_of: Callable[[int], Sequence[Cell]]) -> None:
        """List `row_count` rows, asking `cells_of(row)` for a row's cells when it is first drawn; cursor to the top."""
        self._row_count = row_count
        self._cells_of = cells_of
        self._cursor = 0
        self._hover = -1
        self._changed()
        self.scroll_to(0, 0, animate=False)

    def _changed(self) -> None:
        self._strips.clear()
        width = sum(column.width + CELL_PADDING for column in self._columns)
        self.virtual_size = Size(width, self._row_count + 1)
        self.refresh()

    def move_cursor(self, row: int) -> None:
        """Highlight `row` (kept within the rows) and scroll it into view."""
        if not self._row_count:
            return
        row = max(0, min(self._row_count - 1, row))
        self._set_hover(-1)
        if row != self._cursor:
            self.refresh_line(self._cursor + 1)
            self._cursor = row
            self.refresh_line(row + 1)
        top = round(self.scroll_y)
        if row < top:
            self.scroll_to(y=row, animate=False)
        elif row >= top + self.page_rows:
            self.scroll_to(y=row - self.page_rows + 1, animate=False)

    def action_move(self, step: int) -> None:
        self.move_cursor(self._cursor + step)

    def action_page(self, pages: int) -> None:
        self.move_cursor(self._cursor + pages * self.page_rows)

    def action_jump(self, row: int) -> None:
        self.move_cursor(row if row >= 0 else self._row_count - 1)

    def action_choose(self) -> None:
        if self._row_count:
            self.post_message(self.Chosen(self, self._cursor))

    def _row_at(self, event: events.MouseEvent) -> int:
        """The row under the mouse, or -1 (the heading, below the last row, outside the rows)."""
        offset = event.get_content_offset(self)
        if offset is None or offset.y < 1:
            return -1
        row = offset.y - 1 + round(self.scroll_y)
        return row if row < self._row_count else -1

    def _on_click(self, event: events.Click) -> None:
        row = self._row_at(event)
        if row < 0:
            return
        event.stop()
        if row == self._cursor:
            self.post_message(self.Chosen(self, row))
        else:
            self.move_cursor(row)

    def _on_mouse_move(self, event: events.MouseMove) -> None:
        self._set_hover(self._row_at(event))

    def _on_leave(self, event: events.Leave) -> None:
        self._set_hover(-1)

    def _set_hover(self, row: int) -> None:
        if row != self._hover:
            if self._hover >= 0:
                self.refresh_line(self._hover + 1)
            self._hover = row
            if row >= 0:
                self.refresh_line(row + 1)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()

    def render_lines(self, crop: Region) -> list[Strip]:
        # Focus and theme change the rows' colours, the width their length: keep no strip drawn for another look.
        look = (self.get_pseudo_class_state(), self.rich_style, self.size.width)
        if look != self._look:
            self._look = look
            self._strips.clear()
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        base = self.rich_style
        scroll_x, scroll_y = self.scroll_offset
        if y == 0:
            strip = self._strip(-1, 0)
        else:
            row = y - 1 + scroll_y
            if row >= self._row_count:
                return Strip.blank(self.size.width, base)
            strip = self._strip(row, 1 if row == self._cursor else 2 if row == self._hover else 0)
        return strip.crop_extend(scroll_x, scroll_x + self.size.width, base)

    def _strip(self, row: int, state: int) -> Strip:
        """Row `row` (-1: the heading) in `state` (0 plain, 1 under the cursor, 2 under the mouse), from the cache."""
        key = (row, state)
        strip = self._strips.get(key)
        if strip is None:
            strip = self._strips[key] = self._draw(row, state)
        return strip

    def _draw(self, row: int, state: int) -> Strip:
        base = self.rich_style
        style_of = self.get_component_rich_style
        if row < 0:
            line_style = base + style_of("session-table--header")
            cells: Sequence[Cell] = [(column.label, PLAIN) for column in self._columns]
            overlay = PLAIN
        else:
            line_style = base + style_of("session-table--even-row") if row % 2 == 0 else base
            cells = self._cells_of(row)
            overlay = PLAIN
            if state == 1:
                cursor = style_of("session-table--cursor")
                line_style += cursor
                # The cursor's colour wins over a cell's own (a red "failed" stays readable on the cursor).
                overlay = Style(color=cursor.color) if cursor.color else PLAIN
            elif state == 2:
                line_style += style_of("session-table--hover")
        segments = []
        for column, (text, style) in zip(self._columns, cells, strict=True):
            fitted = set_cell_size(text, column.width)
            if column.right and cell_len(text) < column.width:
                fitted = text.rjust(column.width - cell_len(text) + len(text))
            segments.append(Segment(f" {fitted} ", line_style + style + overlay))
        # The row's colour runs to the right edge when the table is narrower than the widget.
        return Strip(segments).extend_cell_length(self.size.width, line_style)


class SessionPickerScreen(ModalScreen[str | None]):
    """Pick a session to open: `enter` dismisses with its id, `escape` with None."""

    # The stylesheet beside this file, given as the screen's default CSS: Textual reads a screen's CSS_PATH the
    # first time it is pushed, then parses every stylesheet of the app again and restyles every widget of every
    # screen (a third of the picker's first open); default CSS is parsed alone, when the screen is registered.
    DEFAULT_CSS = Path(__file__).with_suffix(".tcss").read_text(encoding="utf-8")
    AUTO_FOCUS = "#picker-filter"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor(-1)", "previous", show=False),
        Binding("down", "cursor(1)", "next", show=False),
        Binding("pageup", "page(-1)", "page up", show=False),
        Binding("pagedown", "page(1)", "page down", show=False),
        Binding("enter", "open", "open session"),
        Binding("escape", "back", "back"),
    ]

    def __init__(
        self, rows: Sequence[PickerRow], *, current_workspace: str, now: Callable[[], float] = time.time
    ) -> None:
        super().__init__()
        self.rows = rows
        self.current_workspace = current_workspace
        self.now = now
        self._entries: list[_Entry] = []
        self._shown: list[_Entry] = []
        self._filter_pending = False
        self._title_width = 16
        self._workspace_width = 16
        self._with_model = True
        self._colours: dict[str, str] = {}
        self._now = 0.0
        self._home = ""
        self._labels: list[str] = []
        self._widths: list[int] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="picker-dialog"):
            yield Static("Open a session", id="picker-title")
            yield Input(placeholder="filter by title, goal or id", id="picker-filter")
            yield SessionTable(id="picker-table")
            yield Static("no sessions yet", id="picker-empty")
            yield Static("", id="picker-more")
            yield Static(
                "\\[↑↓] move  \\[enter] open  \\[esc] back  type to filter  ↗ other workspace", id="picker-keys"
            )

    def on_mount(self) -> None:
        width = self.app.size.width
        self._with_model = width >= NARROW_WIDTH
        if self._with_model:
            spare = width - FIXED_WIDTH - MODEL_WIDTH - 2
            self._title_width = spare * 11 // 20
            self._workspace_width = spare - self._title_width
        else:
            self._workspace_width = NARROW_WORKSPACE_WIDTH
            self._title_width = max(12, width - FIXED_WIDTH - NARROW_WORKSPACE_WIDTH)
        self._now = self.now()
        self._home = str(Path.home())
        self._colours = self.app.get_css_variables()
        # Only the sessions the table lists are read now; the filter reads the rest at its first key.
        self._entries = [self._entry(row) for row in islice(self.rows, MAX_ROWS)]
        self._labels = [column for column in COLUMNS if self._with_model or column != "model"]
        others = [len(label) for label in self._labels[1:]]
        for entry in self._entries:
            others = [max(pair) for pair in zip(others, entry.widths(), strict=True)]
        title_room = width - FRAME_WIDTH - CELL_PADDING * len(self._labels) - sum(others)
        self._title_width = max(self._title_width, title_room)
        self._widths = [len(self._labels[0]), *others]
        self._show(self._entries)

    def _read_all(self) -> None:
        if len(self._entries) < len(self.rows):
            self._entries += [self._entry(row) for row in islice(self.rows, len(self._entries), None)]

    def _widen(self, entries: list[_Entry]) -> None:
        """Widen the columns to the widest cells of `entries`; they never narrow, so filtering does not move them."""
        widths = self._widths
        for entry in entries:
            title = min(len(entry.title), self._title_width) if entry.title else len(NO_GOAL)
            widths = [max(pair) for pair in zip(widths, [title, *entry.widths()], strict=True)]
        table = self.query_one(SessionTable)
        if widths != self._widths or not table.columns:
            self._widths = widths
            columns = zip(self._labels, widths, strict=True)
            table.set_columns([Column(label, width, label in RIGHT_ALIGNED) for label, width in columns])

    def _entry(self, row: object) -> _Entry:
        session_id = str(getattr(row, "id", "") or "")
        title = str(getattr(row, "title", "") or "")
        goal = str(getattr(row, "goal", "") or "")
        workspace = str(getattr(row, "workspace", "") or "")
        model = getattr(row, "model", None)
        updated = getattr(row, "updated", None)
        status = str(getattr(row, "status", "") or "")
        events = getattr(row, "event_count", 0)
        other = getattr(row, "other_workspace", None)
        if other is None:
            other = bool(workspace) and workspace != self.current_workspace
        broken = bool(getattr(row, "broken", False)) or status == "broken"
        problem = str(getattr(row, "problem", "") or "")

        if other:
            workspace_text = OTHER_MARK + shorten_path(workspace, self._workspace_width - len(OTHER_MARK), self._home)
        else:
            workspace_text = shorten_path(workspace, self._workspace_width, self._home) if workspace else "—"
        if isinstance(updated, datetime):
            updated = updated.timestamp()
        when = relative_time(float(updated), self._now) if isinstance(updated, (int, float)) else "—"
        model_text = (_clip(str(model), MODEL_WIDTH) if model else "—") if self._with_model else None
        haystack = f"{title}\n{goal}\n{session_id}".casefold()
        return _Entry(session_id, haystack, title, workspace_text, bool(other), model_text, when,
                      "broken" if broken else status, problem, str(events if isinstance(events, int) else 0))

    def _show(self, entries: list[_Entry]) -> None:
        # The filter searches all sessions, so listing only the newest MAX_ROWS loses nothing.
        shown = self._shown = entries[:MAX_ROWS]
        self._widen(shown)
        table = self.query_one(SessionTable)
        table.show(len(shown), lambda row: shown[row].cells(self._title_width, self._colours))
        more = self.query_one("#picker-more", Static)
        total = len(self.rows) if entries is self._entries else len(entries)
        more.update(f"{len(shown)} of {total} shown: type to filter" if total > len(shown) else "")
        more.display = total > len(shown)
        empty = self.query_one("#picker-empty", Static)
        empty.update("no sessions yet" if not self.rows else "no session matches the filter")
        empty.display = not entries
        table.display = bool(entries)

    @property
    def shown_ids(self) -> list[str]:
        """The ids of the sessions currently listed, top to bottom."""
        return [entry.session_id for entry in self._shown]

    @property
    def highlighted_id(self) -> str | None:
        """The id of the session under the cursor, or None when the list is empty."""
        row = self.query_one(SessionTable).cursor_row
        return self._shown[row].session_id if 0 <= row < len(self._shown) else None

    @on(Input.Changed, "#picker-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        # Keys already queued (fast typing, a paste) coalesce into one rebuild of the table.
        if not self._filter_pending:
            self._filter_pending = True
            self.call_later(self._apply_filter)

    def _apply_filter(self) -> None:
        if not self._filter_pending:
            return
        self._filter_pending = False
        needle = self.query_one("#picker-filter", Input).value.strip().casefold()
        self._read_all()
        self._show([entry for entry in self._entries if needle in entry.haystack] if needle else self._entries)

    @on(Input.Submitted, "#picker-filter")
    def _submit(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_open()

    @on(SessionTable.Chosen, "#picker-table")
    def _chosen(self, event: SessionTable.Chosen) -> None:
        event.stop()
        self.action_open()

    def action_cursor(self, step: int) -> None:
        self._apply_filter()
        self.query_one(SessionTable).action_move(step)

    def action_page(self, pages: int) -> None:
        self._apply_filter()
        self.query_one(SessionTable).action_page(pages)

    def action_open(self) -> None:
        self._apply_filter()
        session_id = self.highlighted_id
        if session_id is not None:
            self.dismiss(session_id)

    def action_back(self) -> None:
        self.dismiss(None)
