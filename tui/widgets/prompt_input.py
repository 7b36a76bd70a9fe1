"""The input box: a multi-line editor where enter sends and shift+enter or ctrl+j starts a new line."""

from __future__ import annotations

from dataclasses import dataclass

from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.widgets import TextArea

NEWLINE_KEYS = ("shift+enter", "ctrl+j")


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

    async def _on_key(self, event: events.Key) -> None:
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
