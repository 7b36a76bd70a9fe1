"""The status line: workspace, model, approval mode, tokens and context, turn time, session, approvals, MCP."""

from __future__ import annotations

import time
from collections.abc import Callable

from textual.content import Content
from textual.widgets import Static

SEPARATOR = Content.styled(" │ ", "$text-muted")
WORKSPACE_WIDTH = 32


def format_tokens(count: int) -> str:
    return f"{count / 1000:.1f}k" if count >= 1000 else str(count)


def short_workspace(path: str) -> str:
    """The end of a long workspace path: the whole path would push the turn time and session off the line."""
    if len(path) <= WORKSPACE_WIDTH:
        return path
    tail = path[-(WORKSPACE_WIDTH - 1):]
    return "…" + (tail[tail.index("/"):] if "/" in tail else tail)


def format_elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"


class StatusBar(Static):
    """One line of session facts; the running turn's elapsed time ticks once a second."""

    DEFAULT_CSS = """
    StatusBar {
        height: 1;
        padding: 0 1;
        background: $panel;
        color: $text;
        &.-busy { background: $primary-muted; }
    }
    """

    def __init__(self, *, workspace: str = "", model: str = "", approval_mode: str = "ask", session_id: str = "",
                 clock: Callable[[], float] = time.monotonic, id: str | None = None) -> None:
        super().__init__(id=id)
        self._clock = clock
        self.workspace = workspace
        self.model = model
        self.approval_mode = approval_mode
        self.session_id = session_id
        self.total_tokens = 0
        self.context_used = 0
        self.context_limit: int | None = None
        self.pending_approvals = 0
        self.mcp = ""
        self.connection = ""
        self._turn_started: float | None = None
        self._turn_seconds: float | None = None

    def on_mount(self) -> None:
        self._ticker = self.set_interval(1.0, self._render_line, pause=True)
        self._render_line()

    def set_session(self, *, session_id: str, workspace: str, model: str | None, approval_mode: str) -> None:
        self.session_id, self.workspace, self.approval_mode = session_id, workspace, approval_mode
        self.model = model or self.model
        self._render_line()

    def set_approval_mode(self, mode: str) -> None:
        self.approval_mode = mode
        self._render_line()

    def set_usage(self, *, total_tokens: int, context_used: int, context_limit: int | None) -> None:
        self.total_tokens, self.context_used = total_tokens, context_used
        self.context_limit = context_limit or self.context_limit
        self._render_line()

    def set_pending_approvals(self, count: int) -> None:
        self.pending_approvals = count
        self._render_line()

    def set_mcp(self, text: str) -> None:
        """The MCP servers' state, as the engine reports it."""
        self.mcp = text
        self._render_line()

    def set_connection(self, text: str) -> None:
        """Shown while the engine is not connected (connecting, endpoint down...)."""
        self.connection = text
        self._render_line()

    def turn_started(self) -> None:
        self._turn_started, self._turn_seconds = self._clock(), None
        self.add_class("-busy")
        self._ticker.resume()
        self._render_line()

    def turn_finished(self) -> None:
        if self._turn_started is not None:
            self._turn_seconds = self._clock() - self._turn_started
        self._turn_started = None
        self.remove_class("-busy")
        self._ticker.pause()
        self._render_line()

    def clear(self) -> None:
        """Forget the session's facts (a different session is being opened)."""
        self.session_id, self.total_tokens, self.context_used, self.context_limit = "", 0, 0, None
        self.pending_approvals, self._turn_started, self._turn_seconds = 0, None, None
        self.remove_class("-busy")
        self._render_line()

    @property
    def line(self) -> str:
        """The status line as plain text."""
        return self._content().plain

    def _content(self) -> Content:
        parts: list[Content] = []
        if self.connection:
            parts.append(Content.styled(self.connection, "bold $text-warning"))
        if self.workspace:
            parts.append(Content(short_workspace(self.workspace)))
        parts.append(Content(self.model or "model: default"))
        parts.append(Content.styled(self.approval_mode, "bold"))
        context = format_tokens(self.context_used)
        if self.context_limit:
            context += f"/{format_tokens(self.context_limit)}"
        parts.append(Content(f"tokens {format_tokens(self.total_tokens)} · ctx {context}"))
        if self._turn_started is not None:
            parts.append(Content.styled(f"⏱ {format_elapsed(self._clock() - self._turn_started)}", "bold"))
        elif self._turn_seconds is not None:
            parts.append(Content.styled(f"last turn {format_elapsed(self._turn_seconds)}", "$text-muted"))
        if self.session_id:
            parts.append(Content(f"session {self.session_id[:8]}"))
        if self.pending_approvals:
            parts.append(Content.styled(f"approvals {self.pending_approvals}", "bold $text-warning"))
        if self.mcp:
            parts.append(Content(self.mcp))
        return SEPARATOR.join(parts)

    def _render_line(self) -> None:
        self.update(self._content())
