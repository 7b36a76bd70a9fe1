"""The command palette's dev-agent commands: only those that fit the current state are offered."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from tui.app import DevAgentApp

APPROVAL_MODES = ("ask", "auto-edit", "full-auto")


class DevAgentCommands(Provider):
    """Resume a session, undo / redo, change the approval mode, copy the last answer, toggle the diff view."""

    def _commands(self) -> Iterator[tuple[str, Callable[[], object], str]]:
        app = cast("DevAgentApp", self.app)
        yield "Resume session…", app.action_open_sessions, "Open the session picker (ctrl+r)"
        if app.engine is not None:
            if app.engine.busy:
                yield "Interrupt the running turn", app.action_interrupt, "Stop the agent; the session stays usable"
            yield "Undo last change", app.action_undo, "Restore the files changed by the last applied change (ctrl+z)"
            yield "Redo change", app.action_redo, "Re-apply the change undone last (ctrl+y)"
            for mode in APPROVAL_MODES:
                if mode != app.approval_mode:
                    yield (f"Approval mode: {mode}", lambda mode=mode: app.set_approval_mode(mode),
                           f"Switch from {app.approval_mode} to {mode}")
        elif app.can_retry:
            yield "Retry starting the engine", app.action_retry_engine, "Connect to the model endpoint again (f5)"
        if app.last_answer:
            yield "Copy last answer", app.copy_last_answer, "Copy the last assistant answer to the clipboard (OSC 52)"
        yield "Toggle diff full screen", app.action_toggle_diff_fullscreen, "Show the diff alone, or go back"

    async def discover(self) -> Hits:
        for name, callback, help_text in self._commands():
            yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, callback, help_text in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)
