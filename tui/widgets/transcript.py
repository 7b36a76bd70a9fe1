"""The conversation: user messages, streamed assistant answers, dimmed reasoning, notes and errors."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rich.segment import Segment
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.content import Content
from textual.css.styles import RulesMap
from textual.strip import Strip
from textual.style import Style
from textual.timer import Timer
from textual.visual import RenderOptions, Visual
from textual.widget import Widget
from textual.widgets import Collapsible, Static

from tui.widgets.md_segments import split_pieces

if TYPE_CHECKING:
    # rich.markdown brings markdown_it (~40 ms, 3 MB): imported when the first answer is shown, not at start-up.
    from rich.markdown import Markdown as RichMarkdown

MAX_MESSAGES = 200
# A resumed session mounts only its newest messages: each finished answer is laid out on every layout pass,
# so mounting all 200 made a 10,000-event resume take seconds. Live messages still grow to MAX_MESSAGES.
REPLAY_MESSAGES = 40
# Of those, the newest few are mounted before the first paint of a resumed session; the older ones follow after
# it (above, the view staying at the bottom), so the last answer shows without waiting.
REPLAY_FIRST = 3
# The older ones are built and rendered at the transcript's width a slice of time at a time, input being handled
# between slices, and mounted together every BACKFILL_MOUNT_S of that work: each mount lays out and repaints the
# transcript, which cost more than rendering the messages when it happened every six of them.
BACKFILL_SLICE_S = 0.02
BACKFILL_MOUNT_S = 0.25
FLUSH_INTERVAL_S = 0.1
# The live tail of a streamed answer is re-rendered at every flush, so its cost grows with its length: past
# this many characters the text so far is cut (at block boundaries, see md_segments) into finished pieces and
# the live widget goes on with the rest. The pieces stay when the answer is final: no frame renders it whole.
SEGMENT_CHARS = 4000

WidgetFactory = Callable[[], Widget]


@dataclass
class _Stream:
    """An assistant message still arriving: its live widget and the text not yet shown in it."""

    widget: _LiveAnswer
    text: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    timer: Timer | None = None
    last_flush: float = float("-inf")
    done: bool = False
    segment: str = ""  # the source the live widget shows: what is not yet a finished piece
    frozen: list[Widget] = field(default_factory=list)  # earlier pieces, each a finished _Answer


class _MarkdownLines(Visual):
    """A Rich Markdown rendered once per width; measuring its height and painting it reuse those lines.

    Textual forgets a widget's measured height on every refresh, and a plain Rich renderable is rendered
    again for each measurement and each paint: replaying a long session measured every answer three
    times (once more when the scrollbar appeared). An answer never changes, so its lines can be kept.
    """

    WIDTHS_KEPT = 2  # the width with and without the scrollbar

    def __init__(self, widget: Widget, markdown: RichMarkdown) -> None:
        self.widget = widget
        self.markdown = markdown
        self._lines: dict[int, list[Strip]] = {}

    def lines(self, width: int) -> list[Strip]:
        """The unstyled lines at this width (the widget's style is applied when painting)."""
        lines = self._lines.get(width)
        if lines is None:
            console = self.widget.app.console
            options = self.widget.app.console_options.update_width(width).update(highlight=False, height=None)
            segments = console.render(self.markdown, options)
            lines = [Strip(line) for line in Segment.split_and_crop_lines(segments, width, include_new_lines=False,
                                                                          pad=False)]
            if len(self._lines) >= self.WIDTHS_KEPT:
                self._lines.pop(next(iter(self._lines)))
            self._lines[width] = lines
        return lines

    def get_optimal_width(self, rules: RulesMap, container_width: int) -> int:
        return container_width

    def get_height(self, rules: RulesMap, width: int) -> int:
        return len(self.lines(width))

    def render_strips(self, width: int, height: int | None, style: Style, options: RenderOptions) -> list[Strip]:
        rich_style = style.rich_style
        return [line.apply_style(rich_style) for line in self.lines(width)[:height]]


class _Answer(Static):
    """A finished assistant message; its content stays the Rich Markdown (``content.markup`` is the source)."""

    def __init__(self, text: str) -> None:
        from rich.markdown import Markdown as RichMarkdown

        super().__init__(RichMarkdown(text), classes="assistant-message")
        self._rendered: _MarkdownLines | None = None

    def render(self) -> _MarkdownLines:
        from rich.markdown import Markdown as RichMarkdown

        markdown = self.content
        assert isinstance(markdown, RichMarkdown)
        if self._rendered is None or self._rendered.markdown is not markdown:
            self._rendered = _MarkdownLines(self, markdown)
        return self._rendered

    def prerender(self, width: int) -> None:
        """Render the lines for this content width now, before mounting: laying it out then renders nothing."""
        self.render().lines(width)


class _LiveAnswer(_Answer):
    """The tail of an answer still arriving, drawn like a finished one and re-rendered at each flush.

    Textual's Markdown widget lays out every block widget on every append (research/textual.md: 20,000 chunks
    took 153 s); a Rich Markdown of at most SEGMENT_CHARS renders in a few milliseconds, and the streamed text
    looks exactly as the final answer will.
    """

    def __init__(self) -> None:
        super().__init__("")
        self.set_classes("streaming")

    def show(self, source: str) -> None:
        from rich.markdown import Markdown as RichMarkdown

        self.update(RichMarkdown(source))


def _user(text: str) -> Widget:
    return Static(Content(text), classes="user-message")


def _answer(text: str) -> Widget:
    return _Answer(text)


def _note(text: str) -> Widget:
    return Static(Content(text), classes="note")


def _error(message: str, hint: str) -> Widget:
    text = Content.assemble(Content.styled("error: ", "bold"), message)
    if hint:
        text = Content.assemble(text, "\n", Content.styled("fix: ", "bold"), hint)
    return Static(text, classes="error-message")


def _reasoning(text: str, body: Static | None = None) -> Collapsible:
    body = body or Static(Content(text), classes="reasoning-text")
    return Collapsible(body, title="reasoning", collapsed=True, classes="reasoning")


class Transcript(VerticalScroll):
    """The conversation, newest at the bottom; keeps at most MAX_MESSAGES widgets so long sessions stay fast."""

    DEFAULT_CSS = """
    Transcript {
        height: 1fr;
        padding: 0 1;
        /* Room for the scrollbar from the start: when it appears, every answer is not laid out again. */
        scrollbar-gutter: stable;
        border: round $panel-lighten-2;
        border-title-color: $text-muted;
        &:focus { border: round $accent; }
        & > #pruned-note { color: $text-muted; text-style: italic; display: none; }
        & > #pruned-note.-shown { display: block; }
        & > .user-message {
            margin: 1 0 0 0;
            padding: 0 1;
            border-left: thick $accent;
            background: $boost;
        }
        & > .assistant-message { margin: 1 0 0 0; }
        & > .streaming { margin: 1 0 0 0; }
        & > .note { color: $text-muted; }
        & > .error-message {
            margin: 1 0 0 0;
            padding: 0 1;
            border-left: thick $error;
            color: $text-error;
        }
        & > .reasoning {
            padding: 0;
            border-top: none;
            background: transparent;
            color: $text-muted;
            & .reasoning-text { color: $text-muted; text-style: italic; }
        }
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "Transcript"
        self._streams: dict[str, _Stream] = {}
        self._reasoning: dict[str, tuple[Static, list[str]]] = {}
        self._pruned = 0
        self._replay: deque[WidgetFactory] | None = None
        self._replay_text: dict[str, list[str]] = {}
        self._replay_reasoning: dict[str, list[str]] = {}
        self._backfill: list[WidgetFactory] = []  # replayed messages not built yet, oldest first
        self._prepared: list[Widget] = []  # built and rendered, not mounted yet, newest first
        self._prepared_s = 0.0  # the work they took

    def compose(self) -> ComposeResult:
        yield Static(id="pruned-note")

    def on_mount(self) -> None:
        self.anchor()

    @property
    def pruned(self) -> int:
        """How many old messages were dropped from the screen."""
        return self._pruned

    def begin_replay(self) -> None:
        """Collect messages without mounting them until end_replay (resume = replay, nothing animated)."""
        self._replay = deque()

    def end_replay(self) -> None:
        """Mount the newest REPLAY_MESSAGES replayed messages in one go."""
        assert self._replay is not None
        for parts in self._replay_reasoning.values():
            self._replay.append(lambda text="".join(parts): _reasoning(text))
        for parts in self._replay_text.values():
            self._replay.append(lambda text="".join(parts): _answer(text))
        self._replay_reasoning.clear()
        self._replay_text.clear()
        factories, self._replay = self._replay, None
        excess = max(0, len(factories) - REPLAY_MESSAGES)
        for _ in range(excess):
            factories.popleft()
        self._pruned += excess
        if self.backfilling:  # an earlier replay's messages are still being filled in above: these go below
            self.mount_all([factory() for factory in factories])
        else:
            newest = [factories.pop() for _ in range(min(REPLAY_FIRST, len(factories)))][::-1]
            self.mount_all([factory() for factory in newest])
            self._backfill = list(factories)
            if self._backfill:
                self.call_after_refresh(self._fill_older)
        self._update_pruned_note()
        self.scroll_end(animate=False)

    @property
    def backfilling(self) -> bool:
        """Whether older replayed messages are still being mounted above the newest ones."""
        return bool(self._backfill or self._prepared)

    def _fill_older(self) -> None:
        """Build and render older replayed messages for a slice of time; mount them above the oldest one shown
        once BACKFILL_MOUNT_S of work is ready, or all of it is."""
        if not self.backfilling:
            return
        started = time.perf_counter()
        width = self.scrollable_content_region.width
        while self._backfill and time.perf_counter() - started < BACKFILL_SLICE_S:
            widget = self._backfill.pop()()
            if width > 0 and isinstance(widget, _Answer):  # a hidden transcript (a narrow tab) has none
                widget.prerender(width)
            self._prepared.append(widget)
        self._prepared_s += time.perf_counter() - started
        if self._backfill and self._prepared_s < BACKFILL_MOUNT_S:
            self.call_after_refresh(self._fill_older)  # nothing to paint: this is when pending input is handled
            return
        oldest = next((child for child in self.children if child.id != "pruned-note"), None)
        self.mount_all(self._prepared[::-1], before=oldest)  # None: at the end
        self._prepared, self._prepared_s = [], 0.0
        if self._backfill:
            self.call_after_refresh(self._fill_older)

    def add_user_message(self, text: str) -> None:
        self._add(lambda: _user(text))

    def add_note(self, text: str) -> None:
        self._add(lambda: _note(text))

    def add_error(self, message: str, hint: str = "") -> None:
        self._add(lambda: _error(message, hint))

    def add_reasoning(self, message_id: str, text: str, *, final: bool) -> None:
        """Reasoning text, streamed (final=False) or complete; shown dimmed and collapsed."""
        if self._replay is not None:
            if final:
                self._replay_reasoning.pop(message_id, None)
                self._replay.append(lambda: _reasoning(text))
            else:
                self._replay_reasoning.setdefault(message_id, []).append(text)
            return
        if message_id not in self._reasoning:
            body = Static(classes="reasoning-text")
            self._reasoning[message_id] = (body, [])
            self._mount_live(_reasoning("", body))
        body, parts = self._reasoning[message_id]
        if final:
            parts[:] = [text]
            del self._reasoning[message_id]
        else:
            parts.append(text)
        body.update(Content("".join(parts)))

    def stream_assistant(self, message_id: str, text: str) -> None:
        """A batch of an assistant message still arriving; written to its Markdown at most ~10 times a second."""
        if self._replay is not None:
            self._replay_text.setdefault(message_id, []).append(text)
            return
        stream = self._streams.get(message_id)
        if stream is None:
            stream = self._streams[message_id] = _Stream(_LiveAnswer())
            self._mount_live(stream.widget)
        stream.text.append(text)
        stream.pending.append(text)
        if stream.timer is None:
            delay = max(0.01, stream.last_flush + FLUSH_INTERVAL_S - time.monotonic())
            stream.timer = self.set_timer(delay, lambda: self._flush(stream))

    def finish_assistant(self, message_id: str, text: str) -> None:
        """The complete message: its streaming Markdown is replaced by one static rendering."""
        if self._replay is not None:
            self._replay_text.pop(message_id, None)
            self._replay.append(lambda: _answer(text))
            return
        stream = self._streams.pop(message_id, None)
        if stream is None:
            self._mount_live(_answer(text))
        else:
            self.call_later(self._retire, stream, text)

    def finish_streams(self) -> None:
        """The run ended: any message still streaming is final with the text it has."""
        for message_id, stream in list(self._streams.items()):
            self.finish_assistant(message_id, "".join(stream.text))
        self._reasoning.clear()

    def clear(self) -> None:
        """Remove every message (a different session is being opened)."""
        for stream in self._streams.values():
            stream.done = True
            if stream.timer is not None:
                stream.timer.stop()
        self._streams.clear()
        self._reasoning.clear()
        self._backfill = []
        self._prepared, self._prepared_s = [], 0.0
        self._pruned = 0
        self.query(".user-message, .assistant-message, .note, .error-message, .reasoning, .streaming").remove()
        self._update_pruned_note()

    async def _flush(self, stream: _Stream) -> None:
        stream.timer = None
        if stream.done:
            return
        stream.last_flush = time.monotonic()
        source = stream.segment + "".join(stream.pending)
        stream.pending = []
        pieces, source = split_pieces(source, SEGMENT_CHARS)
        if pieces:
            frozen = [_answer(piece) for piece in pieces]
            stream.frozen.extend(frozen)
            if stream.widget.parent is self:
                await self.mount_all(frozen, before=stream.widget)
            if stream.done:
                return
        stream.segment = source
        stream.widget.show(source)

    async def _retire(self, stream: _Stream, text: str) -> None:
        """The final text replaces the live widget; finished pieces stay when the text is what streamed."""
        stream.done = True
        if stream.timer is not None:
            stream.timer.stop()
        if "".join(stream.text) == text:  # no re-rendering of the whole: only the live tail becomes final
            pieces, rest = split_pieces(stream.segment + "".join(stream.pending), SEGMENT_CHARS)
            final = [_answer(piece) for piece in [*pieces, rest] if piece.strip()]
        else:  # the final text differs (e.g. a tool call printed as text was taken out): render it anew
            final = [_answer(text)]
            for frozen in stream.frozen:
                await frozen.remove()
        stream.frozen.clear()
        if stream.widget.parent is self:
            if final:
                await self.mount_all(final, after=stream.widget)
            await stream.widget.remove()

    def _add(self, factory: WidgetFactory) -> None:
        if self._replay is not None:
            self._replay.append(factory)
        else:
            self._mount_live(factory())

    def _mount_live(self, widget: Widget) -> None:
        self.mount(widget)
        messages = [child for child in self.children if child.id != "pruned-note"]
        excess = len(messages) - MAX_MESSAGES
        if excess > 0:
            streaming = {stream.widget for stream in self._streams.values()}
            old = [child for child in messages[:excess] if child not in streaming]
            self._pruned += len(old)
            self.remove_children(old)
            self._update_pruned_note()

    def _update_pruned_note(self) -> None:
        note = self.query_one("#pruned-note", Static)
        note.set_class(self._pruned > 0, "-shown")
        note.update(Content(f"… {self._pruned} earlier messages are not shown here (they are in the session log)"))
