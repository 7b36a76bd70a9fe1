"""The main screen: transcript and input beside the plan, tool calls and diff; tabs when narrow; a notice when tiny."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Static, Tab, Tabs

from tui.widgets.diff_view import DiffView
from tui.widgets.error_banner import ErrorBanner
from tui.widgets.key_footer import KeyFooter
from tui.widgets.plan_pane import PlanPane
from tui.widgets.prompt_input import PromptInput
from tui.widgets.status_bar import StatusBar
from tui.widgets.tool_call_list import ToolCallList
from tui.widgets.transcript import Transcript

MIN_WIDTH, MIN_HEIGHT = 60, 16
WIDE_WIDTH = 100
PANES = ("transcript", "plan", "tools", "diff")

PaneT = TypeVar("PaneT", bound=Widget)


class MainScreen(Screen[None]):
    """Where a session is watched and steered; the app routes every core event to the panes here."""

    CSS_PATH = "main_screen.tcss"
    AUTO_FOCUS = "#prompt"
    HORIZONTAL_BREAKPOINTS = [(0, "-tiny"), (MIN_WIDTH, "-narrow"), (WIDE_WIDTH, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (MIN_HEIGHT, "-tall")]

    BINDINGS = [
        Binding("escape", "app.interrupt", "Interrupt", id="interrupt"),
        Binding("ctrl+r", "app.open_sessions", "Sessions", id="sessions"),
        Binding("ctrl+z", "app.undo", "Undo change", id="undo"),
        Binding("ctrl+y", "app.redo", "Redo change", id="redo"),
        Binding("ctrl+o", "toggle_tool_call", "Expand call", id="expand-call"),
        Binding("f5", "app.retry_engine", "Retry", id="retry", show=False),
    ]

    def __init__(self, *, workspace: str = "", model: str = "", approval_mode: str = "ask", session_id: str = "",
                 clock: Callable[[], float] = time.monotonic) -> None:
        # The tab shown in the narrow layout is set before mounting: setting it on mount restyled every widget.
        super().__init__(classes="-show-transcript")
        self._clock = clock
        self._labels = {"workspace": workspace, "model": model, "approval_mode": approval_mode,
                        "session_id": session_id}
        # Each pane, once found: replaying a long session routes ~10,000 events, each through a pane property.
        self._panes: dict[type[Widget], Widget] = {}

    def compose(self) -> ComposeResult:
        yield ErrorBanner(id="error-banner")
        yield Tabs(*(Tab(name.capitalize(), id=f"tab-{name}") for name in PANES), id="pane-tabs")
        with Horizontal(id="panes"):
            yield Transcript(id="transcript")
            with Vertical(id="side"):
                yield PlanPane(id="plan")
                yield ToolCallList(clock=self._clock, id="tools")
                yield DiffView(id="diff")
        yield PromptInput(id="prompt")
        yield StatusBar(**self._labels, clock=self._clock, id="status")
        yield KeyFooter()
        yield Static(f"terminal too small: need at least {MIN_WIDTH}x{MIN_HEIGHT}", id="too-small")

    def on_screen_resume(self) -> None:
        for footer in self.query(KeyFooter):  # a screen resumed before it composed has none yet
            footer.screen_resumed()

    @property
    def transcript(self) -> Transcript:
        return self._pane(Transcript)

    @property
    def plan(self) -> PlanPane:
        return self._pane(PlanPane)

    @property
    def tools(self) -> ToolCallList:
        return self._pane(ToolCallList)

    @property
    def diff(self) -> DiffView:
        return self._pane(DiffView)

    @property
    def status(self) -> StatusBar:
        return self._pane(StatusBar)

    @property
    def prompt(self) -> PromptInput:
        return self._pane(PromptInput)

    @property
    def banner(self) -> ErrorBanner:
        return self._pane(ErrorBanner)

    def _pane(self, kind: type[PaneT]) -> PaneT:
        pane = self._panes.get(kind)
        if pane is None:
            pane = self._panes[kind] = self.query_one(kind)
        assert isinstance(pane, kind)
        return pane

    def show_error(self, message: str, hint: str = "") -> None:
        """Show the engine start failure at the top and give the banner focus so `r` retries."""
        self.banner.show_error(message, hint)
        self.banner.focus()

    def hide_error(self) -> None:
        if self.banner.shown:
            self.banner.hide()
            self.prompt.focus()

    def show_pane(self, name: str) -> None:
        """In the narrow layout, the pane to show (transcript, plan, tools or diff)."""
        self.query_one(Tabs).active = f"tab-{name}"

    def clear_panes(self) -> None:
        """Empty every pane before another session is replayed into them."""
        self.transcript.clear()
        self.plan.clear()
        self.tools.clear()
        self.diff.clear()
        self.status.clear()

    def action_toggle_tool_call(self) -> None:
        """Expand or collapse the selected tool call (the latest when none is focused)."""
        self.tools.toggle_selected()

    def action_toggle_diff_fullscreen(self) -> None:
        """Show the diff alone on the screen, or go back to the normal layout."""
        self.toggle_class("-diff-full")

    @on(Tabs.TabActivated, "#pane-tabs")
    def _tab_activated(self, event: Tabs.TabActivated) -> None:
        active = (event.tab.id or "tab-transcript").removeprefix("tab-")
        for name in PANES:
            self.set_class(name == active, f"-show-{name}")

    @on(ErrorBanner.RetryRequested)
    def _retry(self) -> None:
        self.app.action_retry_engine()
