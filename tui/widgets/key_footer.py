"""The key footer: the screen's keys on one line, drawn by one widget, looking like Textual's Footer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.screen import Screen
from textual.widget import Widget

PALETTE_MARK = "▏"


@dataclass(frozen=True)
class _Key:
    """One key as drawn: which key it simulates, its cells on the line, and whether it is enabled."""

    key: str
    start: int
    end: int
    enabled: bool
    tooltip: str


class KeyFooter(Widget, can_focus=False):
    """The keys of the focused widget and its ancestors, as Textual's Footer shows them, in one widget.

    Textual's Footer is a container of one widget per key, rebuilt (unmounted, composed, styled and laid out)
    after every change of focus: about a quarter of the app's first frame, and again whenever a modal comes
    and goes. This draws the same line as one `Text`, rebuilt at most once per refresh and only while its
    screen is the active one (a change made while it was covered is applied when the screen comes back).
    A click on a key presses it, as in the Footer; hovering a key highlights it.
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "footer-key--key",
        "footer-key--description",
        "footer-key--item",
        "footer-key--hover",
        "footer-key--palette-mark",
    }

    DEFAULT_CSS = """
    KeyFooter {
        dock: bottom;
        height: 1;
        color: $footer-foreground;
        background: $footer-background;
        text-wrap: nowrap;
        & > .footer-key--item { background: $footer-item-background; }
        & > .footer-key--key {
            color: $footer-key-foreground;
            background: $footer-key-background;
            text-style: bold;
        }
        & > .footer-key--description {
            color: $footer-description-foreground;
            background: $footer-description-background;
        }
        & > .footer-key--hover { color: $footer-key-foreground; background: $block-hover-background; }
        & > .footer-key--palette-mark { color: $foreground 20%; }
    }
    """

    def __init__(self) -> None:
        super().__init__()
        self._ready = False
        self._rebuild_pending = False
        self._stale = False
        self._bindings: list[tuple[Binding, bool, str]] = []
        self._palette: tuple[Binding, bool, str] | None = None
        self._keys: list[_Key] = []
        self._hover = -1

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self.bindings_changed)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def bindings_changed(self, screen: Screen) -> None:
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
        if self._stale:
            self.call_later(self.bindings_changed, self.screen)

    def _rebuild(self) -> None:
        self._rebuild_pending = False
        self._stale = False
        self._ready = True
        active = self.screen.active_bindings
        # One key per action, the first bound (the focused widget's), as the Footer does.
        by_action: dict[str, tuple[Binding, bool, str]] = {}
        for _node, binding, enabled, tooltip in active.values():
            if binding.show:
                by_action.setdefault(binding.action, (binding, enabled, tooltip))
        self._bindings = list(by_action.values())
        self._palette = None
        if self.app.ENABLE_COMMAND_PALETTE and self.app.COMMAND_PALETTE_BINDING in active:
            _node, binding, enabled, _tooltip = active[self.app.COMMAND_PALETTE_BINDING]
            self._palette = (binding, enabled, binding.tooltip or binding.description)
        self.refresh()

    def render(self) -> Text:
        if not self._ready:
            return Text()
        style_of = self.get_component_rich_style
        item, key_style, description_style = (style_of("footer-key--item"), style_of("footer-key--key"),
                                              style_of("footer-key--description"))
        hover, dim = style_of("footer-key--hover"), Style(dim=True)
        line = Text(no_wrap=True, overflow="crop")
        keys: list[_Key] = []

        def add(binding: Binding, enabled: bool, tooltip: str, key_text: str, description_text: str) -> None:
            start = line.cell_len
            over = hover if len(keys) == self._hover else Style()
            state = Style() if enabled else dim
            line.append(key_text, item + key_style + over + state)
            line.append(description_text, item + description_style + over + state)
            keys.append(_Key(binding.key, start, line.cell_len, enabled, tooltip))

        for binding, enabled, tooltip in self._bindings:
            description = f"{binding.description} " if binding.description else ""
            add(binding, enabled, tooltip, f" {self.app.get_key_display(binding)} ", description)
        if self._palette is not None:
            binding, enabled, tooltip = self._palette
            # Docked right like the Footer's: the compact look, a thin mark before it and a cell after it.
            display = self.app.get_key_display(binding)
            width = len(PALETTE_MARK) + len(display) + len(binding.description) + 2
            line.truncate(max(0, self.size.width - width), pad=True)
            keys = [key for key in keys if key.end <= line.cell_len]
            line.append(PALETTE_MARK, item + style_of("footer-key--palette-mark"))
            add(binding, enabled, tooltip, display, f" {binding.description}")
            line.append(" ", item)
        self._keys = keys
        return line

    def _key_at(self, x: int) -> int:
        for index, key in enumerate(self._keys):
            if key.start <= x < key.end:
                return index
        return -1

    def on_mouse_move(self, event: events.MouseMove) -> None:
        index = self._key_at(event.x)
        if index != self._hover:
            self._hover = index
            self.tooltip = self._keys[index].tooltip or None if index >= 0 else None
            self.refresh()

    def on_leave(self, event: events.Leave) -> None:
        if self._hover != -1:
            self._hover = -1
            self.tooltip = None
            self.refresh()

    def on_mouse_down(self, event: events.MouseDown) -> None:
        index = self._key_at(event.x)
        if index < 0:
            return
        if self._keys[index].enabled:
            self.app.simulate_key(self._keys[index].key)
        else:
            self.app.bell()
