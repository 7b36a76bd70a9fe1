"""The key footer: Textual's Footer, rebuilt once per batch of binding changes and not while it is covered."""

from __future__ import annotations

from textual.screen import Screen
from textual.widgets import Footer


class KeyFooter(Footer):
    """Textual's Footer rebuilds all its keys after every change of focus, queued once per change: three
    times before the first frame settles, and again whenever a screen (the session picker) covers its own.
    This one rebuilds at most once per refresh, and only while its screen is the active one; a change made
    while it was covered is applied when its screen comes back.
    """

    def __init__(self) -> None:
        super().__init__()
        self._rebuild_pending = False
        self._stale = False

    def bindings_changed(self, screen: Screen) -> None:
        self._bindings_ready = True
        if not screen.app.app_focus or not self.is_attached or screen is not self.screen:
            return
        if not screen.is_active:
            self._stale = True
            return
        if not self._rebuild_pending:
            self._rebuild_pending = True
            self.call_after_refresh(self._rebuild)

    def screen_resumed(self) -> None:
        """Its screen is on top again: catch up with what changed meanwhile."""
        if self._stale:  # in the footer's own context: its keys bind to its reactives as they are composed
            self.call_later(self.bindings_changed, self.screen)

    async def _rebuild(self) -> None:
        self._rebuild_pending = False
        self._stale = False
        await self.recompose()
