"""The conversation: user messages, streamed assistant answers, dimmed reasoning, notes and errors."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from rich.markdown import Markdown as RichMarkdown
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.content import Content
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Collapsible, Markdown, Static
from textual.widgets.markdown import MarkdownStream

MAX_MESSAGES = 200
# A resumed session mounts only its newest messages: each finished answer is laid out on every layout pass,
# so mounting all 200 made a 10,000-event resume take seconds. Live messages still grow to MAX_MESSAGES.
REPLAY_MESSAGES = 40
FLUSH_INTERVAL_S = 0.1
# A streaming Markdown is re-laid out on every write, so its cost grows with its length: past this many
# characters the text so far (up to a line break) is frozen into a Static and a fresh Markdown goes on.
SEGMENT_CHARS = 4000

WidgetFactory = Callable[[], Widget]


@dataclass
class _Stream:
    """An assistant message still arriving: its Markdown widget and the text not yet written to it."""

    widget: Markdown
    text: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    stream: MarkdownStream | None = None
    timer: Timer | None = None
    last_flush: float = float("-inf")
    done: bool = False
    segment: list[str] = field(default_factory=list)  # text in the live Markdown widget
    segment_chars: int = 0
    frozen: list[Widget] = field(default_factory=list)  # earlier segments, now Statics


def _user(text: str) -> Widget:
    return Static(Content(text), classes="user-message")


def _answer(text: str) -> Widget:
    return Static(RichMarkdown(text), classes="assistant-message")


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
        & > Markdown { margin: 1 0 0 0; padding: 0; }
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
        self.mount_all([factory() for factory in factories])
        self._update_pruned_note()
        self.scroll_end(animate=False)

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
            stream = self._streams[message_id] = _Stream(Markdown(classes="streaming"))
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
            if stream.stream is not None:
                self.call_later(stream.stream.stop)
        self._streams.clear()
        self._reasoning.clear()
        self._pruned = 0
        self.query(".user-message, .assistant-message, .note, .error-message, .reasoning, Markdown").remove()
        self._update_pruned_note()

    async def _flush(self, stream: _Stream) -> None:
        stream.timer = None
        if stream.done:
            return
        stream.last_flush = time.monotonic()
        text, stream.pending = "".join(stream.pending), []
        cut = text.rfind("\n") if stream.segment_chars + len(text) > SEGMENT_CHARS else -1
        if cut != -1:
            head, text = text[:cut + 1], text[cut + 1:]
            if stream.stream is not None:
                await stream.stream.stop()
                stream.stream = None
            frozen = _answer("".join(stream.segment) + head)
            stream.frozen.append(frozen)
            if stream.widget.parent is self:
                await self.mount(frozen, before=stream.widget)
            await stream.widget.update("")
            stream.segment, stream.segment_chars = [], 0
            if stream.done:
                return
        if not text:
            return
        if stream.stream is None:
            stream.stream = Markdown.get_stream(stream.widget)
        stream.segment.append(text)
        stream.segment_chars += len(text)
        await stream.stream.write(text)

    async def _retire(self, stream: _Stream, text: str) -> None:
        stream.done = True
        if stream.timer is not None:
            stream.timer.stop()
        if stream.stream is not None:
            await stream.stream.stop()
        if stream.widget.parent is self:
            await self.mount(_answer(text), after=stream.widget)
            await stream.widget.remove()
        for frozen in stream.frozen:  # the final rendering replaces every segment
            await frozen.remove()
        stream.frozen.clear()

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
