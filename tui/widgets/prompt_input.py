"""The input box: a multi-line editor where enter sends and shift+enter or ctrl+j starts a new line."""

from __future__ import annotations

import time
from dataclasses import dataclass

from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.timer import Timer
from textual.widgets import TextArea

NEWLINE_KEYS = ("shift+enter", "ctrl+j")
# Every blink repaints the box, and those repaints were most of an idle agent-tui's CPU: like GTK
# (gtk-cursor-blink-timeout), the cursor stops blinking, and stays lit, after this long without input.
BLINK_FOR_S = 10.0


class PromptInput(TextArea):
    """Type a goal or a follow-up; enter posts PromptInput.Submitted (the app decides whether to send it)."""

    BINDINGS = [
        Binding("enter", "submit", "Send", id="send"),
        Binding("shift+enter,ctrl+j", "newline", "New line", show=False),
        # TextArea binds ctrl+z / ctrl+y to text undo; in dev-agent they undo and redo applied file changes.
        Binding("ctrl+z", "app.undo", "Undo change", id="undo"),
        Binding("ctrl+y", "app.redo", "Redo change", id="redo"),
    ]

    DEFAULT_CSS = """
    PromptInput {
        height: auto;
        min-height: 3;
        max-height: 10;
        border: round $panel-lighten-2;
        &:focus { border: round $accent; }
    }
    """

    @dataclass
    class Submitted(Message):
        """The user pressed enter on this text."""

        prompt_input: PromptInput
        text: str

        @property
        def control(self) -> PromptInput:
            return self.prompt_input

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, soft_wrap=True, show_line_numbers=False, compact=False)
        self.border_title = "Message"
        self._last_input = time.monotonic()
        self._blink_check: Timer | None = None
        self._blink_stopped_when_idle = False

    def on_focus(self) -> None:
        self._keep_blinking()

    def on_mouse_down(self) -> None:
        self._keep_blinking()

    def on_paste(self) -> None:
        self._keep_blinking()

    def _keep_blinking(self) -> None:
        """Input came: blink again if idleness stopped it, for BLINK_FOR_S more (blink off by choice stays off)."""
        self._last_input = time.monotonic()
        if self._blink_stopped_when_idle:
            self._blink_stopped_when_idle = False
            self.cursor_blink = True
        if self._blink_check is None:
            self._blink_check = self.set_timer(BLINK_FOR_S, self._stop_blinking_when_idle)

    def _stop_blinking_when_idle(self) -> None:
        # One timer per idle period, re-armed for the rest of it: typing costs no timer churn.
        self._blink_check = None
        idle = time.monotonic() - self._last_input
        if idle < BLINK_FOR_S:
            self._blink_check = self.set_timer(BLINK_FOR_S - idle, self._stop_blinking_when_idle)
        elif self.cursor_blink:
            self._blink_stopped_when_idle = True
            self.cursor_blink = False

    async def _on_key(self, event: events.Key) -> None:
        self._keep_blinking()
        # TextArea inserts a newline for enter before bindings are looked at; take enter and the newline keys first.
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            self.action_submit()
        elif event.key in NEWLINE_KEYS:
            event.stop()
            event.prevent_default()
            self.action_newline()

    def action_submit(self) -> None:
        """Send the text (the app clears the box once the engine took it)."""
        self.post_message(self.Submitted(self, self.text))

    def action_newline(self) -> None:
        self.insert("\n")
