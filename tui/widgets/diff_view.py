"""The diff pane: the change waiting for approval or the last one applied, highlighted, numbered and scrollable."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Static

from tui.widgets.diff_render import render_diff

EMPTY = "no changes yet"


class DiffView(VerticalScroll, can_focus=True):
    """A unified diff with old and new line numbers; `f` toggles the full-screen view."""

    BINDINGS = [Binding("f", "screen.toggle_diff_fullscreen", "Full screen diff", id="diff-fullscreen")]

    DEFAULT_CSS = """
    DiffView {
        height: 1fr;
        border: round $panel-lighten-2;
        border-title-color: $text-muted;
        &:focus { border: round $accent; }
        & > #diff-body { width: auto; min-width: 100%; }
        &.-empty > #diff-body { color: $text-muted; }
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, classes="-empty")
        self.border_title = "Diff"

    def compose(self) -> ComposeResult:
        yield Static(Content(EMPTY), id="diff-body")

    def show_diff(self, diff: str, title: str) -> None:
        """Show this diff from the top; `title` says whose change it is and whether it is applied."""
        self.remove_class("-empty")
        self.border_title = title
        self.query_one("#diff-body", Static).update(render_diff(diff))
        self.scroll_home(animate=False)

    def clear(self) -> None:
        """Back to the empty pane (a different session is being opened)."""
        self.add_class("-empty")
        self.border_title = "Diff"
        self.query_one("#diff-body", Static).update(Content(EMPTY))
