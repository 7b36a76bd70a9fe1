"""The tool calls of the session: one collapsed row per call that expands to its full arguments and output."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from textual import on
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.content import Content
from textual.events import Click
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Collapsible, Log, Static
from textual.widgets.collapsible import CollapsibleTitle

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
MAX_ROWS = 200
# A resumed session builds rows for its newest calls only: 200 rows dominated the time to resume a long
# session. Live calls still grow to MAX_ROWS.
REPLAY_ROWS = 40
HEAD_LINES = 40
TAIL_LINES = 40
SHORT_ARGS_WIDTH = 44
SHORT_ARG_KEYS = ("command", "path", "pattern", "query", "url", "name")

STATUS_TEXT = {
    "running": "running",
    "waiting": "waiting for approval",
    "ok": "ok",
    "failed": "failed",
    "refused": "refused",
    "rejected": "rejected",
}
STATUS_MARK = {"waiting": "?", "ok": "✓", "failed": "✗", "refused": "⊘", "rejected": "⊘"}
STATUS_STYLE = {
    "running": "$text-accent",
    "waiting": "bold $text-warning",
    "ok": "$text-success",
    "failed": "$text-error",
    "refused": "$text-error",
    "rejected": "$text-warning",
}


def short_arguments(arguments: str, width: int = SHORT_ARGS_WIDTH) -> str:
    """The argument a reader recognises the call by (the path, the command...), on one line, truncated."""
    try:
        data = json.loads(arguments) if arguments else {}
    except ValueError:
        data = None
    if isinstance(data, dict):
        text = next((data[key] for key in SHORT_ARG_KEYS if isinstance(data.get(key), str)), None)
        if text is None:
            text = ", ".join(f"{key}={value}" for key, value in data.items())
    else:
        text = arguments
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def full_arguments(arguments: str) -> str:
    """The arguments as indented JSON when they parse, else as the model sent them."""
    try:
        return json.dumps(json.loads(arguments), indent=2, ensure_ascii=False)
    except ValueError:
        return arguments


def head_and_tail(text: str, head: int = HEAD_LINES, tail: int = TAIL_LINES) -> list[str]:
    """The first and last lines of a long text with a line saying how many were left out."""
    lines = text.splitlines()
    if len(lines) <= head + tail:
        return lines
    return [*lines[:head], f"… {len(lines) - head - tail} lines not shown …", *lines[-tail:]]


def format_duration(ms: float) -> str:
    return f"{ms:.0f}ms" if ms < 1000 else f"{ms / 1000:.1f}s"


@dataclass
class ToolCall:
    """What the list knows about one call."""

    call_id: str
    tool: str
    arguments: str = ""
    status: str = "running"
    duration_ms: float | None = None
    output: str = ""
    output_chars: int = 0


class ToolCallRow(CollapsibleTitle):
    """A call that was never expanded: one widget drawn like a collapsed Collapsible's title.

    A Collapsible is three widgets mounted in two passes, and most calls are never opened: a resumed session's
    rows cost more than the rest of its replay. The first expansion puts a real Collapsible in the row's place.
    """

    class ExpandRequested(Message):
        """Enter or a click on the row."""

        def __init__(self, row: ToolCallRow) -> None:
            super().__init__()
            self.row = row

    # As wide as the list: an auto width measured at mount stayed that of the first title (a call starts
    # without its arguments, which arrive in the same batch of events and widen the title).
    DEFAULT_CSS = """
    ToolCallRow { width: 1fr; }
    """

    def __init__(self, title: Content) -> None:
        super().__init__(label=title, collapsed_symbol="▶", expanded_symbol="▼", collapsed=True)

    @property
    def title(self) -> Content:
        return Content.from_text(self.label)

    @title.setter
    def title(self, title: Content) -> None:
        self.label = title

    async def _on_click(self, event: Click) -> None:
        event.stop()
        self.post_message(self.ExpandRequested(self))

    def action_toggle_collapsible(self) -> None:
        self.post_message(self.ExpandRequested(self))


class ToolCallList(VerticalScroll):
    """One row per tool call (name, short arguments, status, duration); enter or a click expands a row."""

    DEFAULT_CSS = """
    ToolCallList {
        height: 1fr;
        border: round $panel-lighten-2;
        border-title-color: $text-muted;
        &:focus-within { border: round $accent; }
        & > .-empty { color: $text-muted; padding: 0 1; }
        & > Collapsible {
            padding: 0;
            border-top: none;
            background: transparent;
            & > Contents { padding: 0 0 0 2; height: auto; }
        }
        & .call-arguments { color: $text-muted; }
        & .call-output { height: auto; max-height: 16; }
    }
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "Tools"
        self._clock = clock
        self._calls: dict[str, ToolCall] = {}
        self._rows: dict[str, ToolCallRow | Collapsible] = {}
        self._replaying = False

    def compose(self) -> ComposeResult:
        yield Static(Content("no tool calls yet"), classes="-empty")

    def on_mount(self) -> None:
        self._spinner = self.set_interval(0.1, self._spin, pause=True)

    def begin_replay(self) -> None:
        """Record calls without building rows until end_replay (a long session replays in one layout pass)."""
        self._replaying = True

    def end_replay(self) -> None:
        """Build the rows of the newest REPLAY_ROWS replayed calls."""
        self._replaying = False
        for call_id in list(self._calls)[:-REPLAY_ROWS]:
            del self._calls[call_id]
        new = [call for call in self._calls.values() if call.call_id not in self._rows]
        for call in new:
            self._rows[call.call_id] = self._new_row(call)
        if new:
            self.query(".-empty").remove()
            self.mount_all([self._rows[call.call_id] for call in new])
            self._prune()
        self._update_spinner()

    def start_call(self, call_id: str, tool: str, arguments: str = "") -> None:
        """A call began streaming from the model."""
        call = self._calls.get(call_id)
        if call is None:
            call = self._calls[call_id] = ToolCall(call_id, tool, arguments)
            if self._replaying:
                return
            row = self._rows[call_id] = self._new_row(call)
            self.query(".-empty").remove()
            self.mount(row)
            self._prune()
        else:
            call.tool, call.arguments = tool, arguments or call.arguments
        self._changed(call)

    def append_arguments(self, call_id: str, text: str) -> None:
        """More of the arguments the model is still streaming."""
        if call := self._calls.get(call_id):
            call.arguments += text
            self._changed(call)

    def request_call(self, call_id: str, tool: str, arguments: str) -> None:
        """The model finished the call: its arguments are final."""
        self.start_call(call_id, tool, arguments)
        self._calls[call_id].arguments = arguments
        self._changed(self._calls[call_id])

    def set_status(self, call_id: str, status: str) -> None:
        """running, waiting (for approval), or a final status."""
        if call := self._calls.get(call_id):
            call.status = status
            self._changed(call)

    def finish_call(self, call_id: str, tool: str, status: str, duration_ms: float, output: str,
                    output_chars: int) -> None:
        """The call ended: its status, how long it took and (the head and tail of) its output."""
        if call_id not in self._calls:
            self.start_call(call_id, tool)
        call = self._calls[call_id]
        call.status, call.duration_ms, call.output, call.output_chars = status, duration_ms, output, output_chars
        self._changed(call)

    def toggle_selected(self) -> None:
        """Expand or collapse the focused row, or the latest one when no row has focus."""
        focused = self.app.focused
        row: Widget | None = None
        if isinstance(focused, ToolCallRow) and focused.parent is self:
            row = focused
        elif isinstance(focused, CollapsibleTitle) and focused.parent in self.children:
            row = focused.parent
        if row is None and self._rows:
            row = next(reversed(self._rows.values()))
        if isinstance(row, ToolCallRow):
            self.call_later(self._expand, row)
        elif isinstance(row, Collapsible):
            row.collapsed = not row.collapsed

    def expanded_call_ids(self) -> list[str]:
        return [call_id for call_id, row in self._rows.items() if not row.collapsed]

    def row_text(self, call_id: str) -> str:
        """The collapsed row as plain text."""
        return self._title(self._calls[call_id]).plain

    def clear(self) -> None:
        """Remove every row (a different session is being opened)."""
        self._calls.clear()
        self._rows.clear()
        self.remove_children()
        self.mount(Static(Content("no tool calls yet"), classes="-empty"))

    @on(Collapsible.Expanded)
    def _expanded(self, event: Collapsible.Expanded) -> None:
        event.stop()
        call_id = next((key for key, row in self._rows.items() if row is event.collapsible), None)
        if call_id is not None:
            self._fill_details(self._calls[call_id], event.collapsible)

    @on(ToolCallRow.ExpandRequested)
    async def _expand_requested(self, event: ToolCallRow.ExpandRequested) -> None:
        event.stop()
        await self._expand(event.row)

    async def _expand(self, row: ToolCallRow) -> None:
        """Put an expanded Collapsible, holding the call's details, where the one-widget row was."""
        call_id = next((key for key, value in self._rows.items() if value is row), None)
        if call_id is None or row.parent is not self:
            return
        call = self._calls[call_id]
        expanded = self._rows[call_id] = Collapsible(title=self._title(call), collapsed=False)
        had_focus = row.has_focus
        await self.mount(expanded, after=row)
        await row.remove()
        self._fill_details(call, expanded)
        if had_focus:
            expanded.query_one(CollapsibleTitle).focus()

    def _fill_details(self, call: ToolCall, row: Collapsible) -> None:
        contents = row.query_one(Collapsible.Contents)
        contents.remove_children()
        output = Log(classes="call-output", auto_scroll=False)
        contents.mount(Static(Content("\n".join(head_and_tail(full_arguments(call.arguments)))),
                              classes="call-arguments"), output)
        if call.output:
            output.write_lines(head_and_tail(call.output))
            if call.output_chars > len(call.output):
                output.write_line(f"({call.output_chars} characters in all)")
        else:
            output.write_line("(no output yet)" if call.status in ("running", "waiting") else "(no output)")

    def _new_row(self, call: ToolCall) -> ToolCallRow:
        return ToolCallRow(self._title(call))

    def _changed(self, call: ToolCall) -> None:
        row = self._rows.get(call.call_id)
        if row is None:
            return
        row.title = self._title(call)
        if isinstance(row, Collapsible) and not row.collapsed:
            self._fill_details(call, row)
        self._update_spinner()

    def _update_spinner(self) -> None:
        if any(call.status == "running" for call in self._calls.values()):
            self._spinner.resume()
        else:
            self._spinner.pause()

    def _title(self, call: ToolCall) -> Content:
        if call.status == "running":
            mark = SPINNER[int(self._clock() * 10) % len(SPINNER)]
        else:
            mark = STATUS_MARK.get(call.status, "·")
        style = STATUS_STYLE.get(call.status, "")
        parts = [
            Content.styled(mark, style),
            " ",
            Content.styled(call.tool, "bold"),
            " ",
            Content(short_arguments(call.arguments)),
            "  ",
            Content.styled(STATUS_TEXT.get(call.status, call.status), style),
        ]
        if call.duration_ms is not None:
            parts.append(Content.styled(f" {format_duration(call.duration_ms)}", "$text-muted"))
        return Content.assemble(*parts)

    def _spin(self) -> None:
        for call in self._calls.values():
            if call.status == "running" and call.call_id in self._rows:
                self._rows[call.call_id].title = self._title(call)

    def _prune(self) -> None:
        while len(self._rows) > MAX_ROWS:
            call_id = next(iter(self._rows))
            self._rows.pop(call_id).remove()
            del self._calls[call_id]
