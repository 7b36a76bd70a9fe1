"""The banner at the top of the main screen when the engine cannot start: the problem, the fix and a retry key."""

from __future__ import annotations

from textual.binding import Binding
from textual.content import Content
from textual.message import Message
from textual.widgets import Static


class ErrorBanner(Static, can_focus=True):
    """Says why the engine is not available; `r` asks to try again."""

    BINDINGS = [Binding("r", "retry", "Retry", id="retry")]

    DEFAULT_CSS = """
    ErrorBanner {
        display: none;
        height: auto;
        padding: 0 1;
        background: $error-muted;
        color: $text;
        border-left: thick $error;
        &.-shown { display: block; }
        &:focus { border-left: thick $accent; }
    }
    """

    class RetryRequested(Message):
        """The user asked to start the engine again."""

    def show_error(self, message: str, hint: str = "") -> None:
        lines = [Content.assemble(Content.styled("cannot start: ", "bold"), message)]
        if hint:
            lines.append(Content.assemble(Content.styled("fix: ", "bold"), hint))
        lines.append(Content.styled("press r (or f5) to retry", "italic"))
        self.update(Content("\n").join(lines))
        self.add_class("-shown")

    def hide(self) -> None:
        self.remove_class("-shown")

    @property
    def shown(self) -> bool:
        return self.has_class("-shown")

    def action_retry(self) -> None:
        self.post_message(self.RetryRequested())
