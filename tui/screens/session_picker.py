"""The session picker: a filterable list of recorded sessions; dismisses with the chosen session id or None."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import ClassVar, Protocol

from rich.style import Style
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Static

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


def _status_cell(status: str, problem: str, colours: dict[str, str]) -> Text:
    mark, label, variable, bold = _status_look(status, problem)
    colour = colours.get(variable, "") if variable else ""
    style = Style(color=colour, bold=bold) if colour.startswith("#") else Style(dim=True, bold=bold)
    return Text(f"{mark} {label}", style=style)


@dataclass
class _Entry:
    """One session, read once: its id, the text the filter searches, and its cells as plain text.

    Rich cells (styles, colours) are built only for the rows a table shows: the filter searches every session,
    but at most MAX_ROWS are ever on screen.
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
    _cells: tuple[Text | str, ...] | None = field(default=None, init=False, repr=False)

    def widths(self) -> list[int]:
        """The cells' widths after the title, as the table measures them."""
        mark, label, _variable, _bold = _status_look(self.status, self.problem)
        model = [] if self.model is None else [len(self.model)]
        return [len(self.workspace), *model, len(self.updated), len(mark) + 1 + len(label), len(self.events)]

    def cells(self, colours: dict[str, str]) -> tuple[Text | str, ...]:
        """The cells after the title, styled."""
        if self._cells is None:
            workspace = Text(self.workspace, style="italic") if self.other else Text(self.workspace)
            model = () if self.model is None else (Text(self.model),)
            self._cells = (workspace, *model, self.updated, _status_cell(self.status, self.problem, colours),
                           Text(self.events, justify="right"))
        return self._cells


class SessionPickerScreen(ModalScreen[str | None]):
    """Pick a session to open: `enter` dismisses with its id, `escape` with None."""

    CSS_PATH = "session_picker.tcss"
    AUTO_FOCUS = "#picker-filter"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor(-1)", "previous", show=False),
        Binding("down", "cursor(1)", "next", show=False),
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
        self._shown: list[str] = []
        self._filter_pending = False
        self._title_width = 16
        self._workspace_width = 16
        self._with_model = True
        self._colours: dict[str, str] = {}

    def compose(self) -> ComposeResult:
        with Vertical(id="picker-dialog"):
            yield Static("Open a session", id="picker-title")
            yield Input(placeholder="filter by title, goal or id", id="picker-filter")
            yield DataTable(cursor_type="row", zebra_stripes=True, id="picker-table")
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
        now = self.now()
        home = str(Path.home())
        self._colours = self.app.get_css_variables()
        self._entries = [self._entry(row, now, home) for row in self.rows]
        columns = [column for column in COLUMNS if self._with_model or column != "model"]
        widths = [len(column) for column in columns[1:]]
        for entry in self._entries:
            widths = [max(pair) for pair in zip(widths, entry.widths(), strict=True)]
        others = sum(widths)
        title_room = width - FRAME_WIDTH - CELL_PADDING * len(columns) - others
        self._title_width = max(self._title_width, title_room)
        table = self.query_one(DataTable)
        table.add_columns(*columns)
        self._show(self._entries)

    def _entry(self, row: object, now: float, home: str) -> _Entry:
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
            workspace_text = OTHER_MARK + shorten_path(workspace, self._workspace_width - len(OTHER_MARK), home)
        else:
            workspace_text = shorten_path(workspace, self._workspace_width, home) if workspace else "—"
        if isinstance(updated, datetime):
            updated = updated.timestamp()
        when = relative_time(float(updated), now) if isinstance(updated, (int, float)) else "—"
        model_text = (_clip(str(model), MODEL_WIDTH) if model else "—") if self._with_model else None
        haystack = f"{title}\n{goal}\n{session_id}".casefold()
        return _Entry(session_id, haystack, title, workspace_text, bool(other), model_text, when,
                      "broken" if broken else status, problem, str(events if isinstance(events, int) else 0))

    def _title_cell(self, title: str) -> Text:
        return Text(_clip(title, self._title_width)) if title else Text(NO_GOAL, style="italic dim")

    def _show(self, entries: list[_Entry]) -> None:
        table = self.query_one(DataTable)
        table.clear()
        # DataTable measures every cell it holds: 1,000 rows took ~0.8 s to open. The filter searches all
        # sessions, so showing the newest MAX_ROWS loses nothing.
        shown = entries[:MAX_ROWS]
        table.add_rows((self._title_cell(entry.title), *entry.cells(self._colours)) for entry in shown)
        self._shown = [entry.session_id for entry in shown]
        more = self.query_one("#picker-more", Static)
        more.update(f"{len(shown)} of {len(entries)} shown: type to filter" if len(entries) > len(shown) else "")
        more.display = len(entries) > len(shown)
        if entries:
            table.move_cursor(row=0)
        empty = self.query_one("#picker-empty", Static)
        empty.update("no sessions yet" if not self._entries else "no session matches the filter")
        empty.display = not entries
        table.display = bool(entries)

    @property
    def shown_ids(self) -> list[str]:
        """The ids of the sessions currently listed, top to bottom."""
        return list(self._shown)

    @property
    def highlighted_id(self) -> str | None:
        """The id of the session under the cursor, or None when the list is empty."""
        row = self.query_one(DataTable).cursor_row
        return self._shown[row] if 0 <= row < len(self._shown) else None

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
        self._show([entry for entry in self._entries if needle in entry.haystack] if needle else self._entries)

    @on(Input.Submitted, "#picker-filter")
    def _submit(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_open()

    @on(DataTable.RowSelected, "#picker-table")
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open()

    def action_cursor(self, step: int) -> None:
        self._apply_filter()
        table = self.query_one(DataTable)
        if self._shown:
            table.move_cursor(row=max(0, min(len(self._shown) - 1, table.cursor_row + step)))

    def action_open(self) -> None:
        self._apply_filter()
        session_id = self.highlighted_id
        if session_id is not None:
            self.dismiss(session_id)

    def action_back(self) -> None:
        self.dismiss(None)
