"""The dev-agent Textual app: paints first, starts the engine in a worker, and routes core events to the panes."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import sys
import termios
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

from textual import on, work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.worker import Worker, WorkerState

from core.errors import ConfigError
from tui.commands import DevAgentCommands
from tui.messages import EngineEvent
from tui.screens.main_screen import MainScreen
from tui.widgets.prompt_input import PromptInput

if TYPE_CHECKING:
    from core.engine import Engine
    from core.events import ApprovalRequested, Event
    from core.watch import WorkspaceWatcher
    from tui.screens.approval_screen import ApprovalAnswer
    from tui.screens.session_picker import PickerRow

EngineFactory = Callable[[], Awaitable["Engine"]]
# Reads a session's recorded events (blocking; run in a thread) before its engine is up.
HistoryProvider = Callable[[], Sequence["Event"]]

RUN_STATUS_NOTES = {
    "failed": "run failed",
    "cancelled": "run interrupted",
    "paused": "run paused: waiting for approval",
    "max_turns": "run stopped: it reached the turn limit",
}


# How long a hung-up app may take to close its engine before the process ends regardless.
HANGUP_GRACE_S = 3.0


def _release_free_memory() -> None:
    """Hand the pages the engine's imports freed back to the system: ~2 MB of an idle app's RSS (glibc only)."""
    import ctypes

    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # no C library to ask, or not glibc: the memory is only kept, not lost
        pass


# Events each of which replaces what the previous one of its type showed (the whole plan, the approval mode, the
# token counts): replay applies only the last of each type, in its place. A long session holds hundreds of each,
# and every one applied redrew its pane. A usage event without a context limit keeps the previous limit, so the
# last one that had a limit is applied too.
LAST_ONE_COUNTS = frozenset({"plan_updated", "run_started", "usage"})


def _superseded(events: Sequence[Event]) -> set[int]:
    """The positions of the replayed events whose effect a later event of the same type overwrites."""
    last: dict[str, int] = {}
    last_limit = -1
    for i, event in enumerate(events):
        if event.type in LAST_ONE_COUNTS:
            last[event.type] = i
            if event.type == "usage" and getattr(event, "context_limit", None):
                last_limit = i
    kept = {*last.values(), last_limit}
    return {i for i, event in enumerate(events) if event.type in LAST_ONE_COUNTS and i not in kept}


class DevAgentApp(App[None]):
    """A terminal client of one core Engine: renders its events and sends it the user's ops."""

    CSS_PATH = "app.tcss"
    TITLE = "dev-agent"
    COMMANDS = App.COMMANDS | {DevAgentCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+q", "quit", "Quit", priority=True, id="quit"),
    ]

    def __init__(
        self,
        *,
        engine_factory: EngineFactory | None,
        initial_goal: str | None = None,
        workspace_label: str = "",
        model_label: str = "",
        approval_mode: str = "ask",
        session_label: str = "",
        clock: Callable[[], float] = time.monotonic,
        sessions_provider: Callable[[], Sequence[PickerRow]] | None = None,
        on_open_session: Callable[[str], Awaitable[None]] | None = None,
        open_session_picker: bool = False,
        watch_workspace: bool = False,
        history_provider: HistoryProvider | None = None,
    ) -> None:
        super().__init__()
        self._engine_factory = engine_factory
        self._history_provider = history_provider
        # The last recorded event already on screen (read from the log before the engine was up), if any.
        self._shown_seq: int | None = None
        self._initial_goal = initial_goal
        self._workspace_label = workspace_label
        self._approval_mode = approval_mode
        self._sessions_provider = sessions_provider
        self._on_open_session = on_open_session
        self._open_session_picker = open_session_picker
        self._watch_workspace = watch_workspace
        self._engine: Engine | None = None
        self._config_error: ConfigError | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._watcher: WorkspaceWatcher | None = None
        self._approvals: list[ApprovalRequested] = []
        self._approval_shown: str | None = None
        self._last_answer = ""
        self._replaying = False
        self._replay_diff: tuple[str, str] | None = None
        self._freeze_on_replay = True  # until another session is opened in this process
        self._main = MainScreen(workspace=workspace_label, model=model_label, approval_mode=approval_mode,
                                session_id=session_label, clock=clock)
        self._event_handlers: dict[str, Callable[[Any], None]] = {
            "session_started": self._session_started,
            "session_resumed": lambda event: self._main.transcript.add_note("session resumed"),
            "user_message": lambda event: self._main.transcript.add_user_message(event.text),
            "run_started": self._run_started,
            "agent_changed": self._agent_changed,
            "assistant_delta": lambda event: self._main.transcript.stream_assistant(event.message_id, event.text),
            "assistant_message": self._assistant_message,
            "reasoning_delta": lambda event: self._main.transcript.add_reasoning(
                event.message_id, event.text, final=False),
            "reasoning": lambda event: self._main.transcript.add_reasoning(event.message_id, event.text, final=True),
            "plan_updated": lambda event: self._main.plan.show_plan(event.steps, event.note),
            "tool_call_started": lambda event: self._main.tools.start_call(event.call_id, event.tool, event.arguments),
            "tool_call_delta": lambda event: self._main.tools.append_arguments(event.call_id, event.text),
            "tool_call_requested": lambda event: self._main.tools.request_call(
                event.call_id, event.tool, event.arguments),
            "approval_requested": self._approval_requested,
            "approval_decided": self._approval_decided,
            "tool_call_finished": self._tool_call_finished,
            "checkpoint_restored": self._checkpoint_restored,
            "file_changed": self._file_changed,
            "usage": lambda event: self._main.status.set_usage(
                total_tokens=event.total_tokens, context_used=event.context_used, context_limit=event.context_limit),
            "review_finished": self._review_finished,
            "run_finished": self._run_finished,
            "error": lambda event: self._main.transcript.add_error(event.message, event.hint),
            "notice": lambda event: self._main.transcript.add_note(event.message),
            "approval_mode_changed": self._approval_mode_changed,
        }

    # ---- public API -------------------------------------------------------------------------------------------

    @property
    def engine(self) -> Engine | None:
        """The connected engine, None while starting or after a start failure."""
        return self._engine

    @property
    def main_screen(self) -> MainScreen:
        return self._main

    @property
    def approval_mode(self) -> str:
        return self._approval_mode

    @property
    def last_answer(self) -> str:
        return self._last_answer

    @property
    def can_retry(self) -> bool:
        return self._engine is None and self._engine_factory is not None

    @property
    def pending_approvals(self) -> int:
        return len(self._approvals)

    @property
    def config_error(self) -> ConfigError | None:
        """The bad setting the app exited for (exit code 2), None otherwise."""
        return self._config_error

    def apply_event(self, event: Event) -> None:
        """Route one core event to the panes: the single path for live events and for replay."""
        handler = self._event_handlers.get(event.type)
        if handler is not None:
            handler(event)

    async def open_engine(self, engine_factory: EngineFactory, history_provider: HistoryProvider | None = None) -> None:
        """Close the current engine, empty the panes and start (and replay) the one this factory builds.

        With a history provider, the session's recorded events are shown while the engine is still starting.
        """
        await self._close_engine()
        if self._freeze_on_replay:
            # The closed session's objects were frozen with the start-up ones: they must be collectable again,
            # and from now on nothing is frozen (a replay would freeze this session's garbage along with it).
            self._freeze_on_replay = False
            gc.unfreeze()
        self.workers.cancel_group(self, "preview")
        self._main.clear_panes()
        self._approvals.clear()
        self._last_answer = ""
        self._shown_seq = None
        self._engine_factory = engine_factory
        self._history_provider = history_provider
        self._start_session()

    def set_approval_mode(self, mode: str) -> None:
        """Change the approval mode for the following tool calls."""
        if self._engine is not None:
            self._engine.set_approval_mode(mode)
        self._approval_mode = mode
        self._main.status.set_approval_mode(mode)
        self.notify(f"approval mode: {mode}")

    def set_mcp_status(self, text: str) -> None:
        """Show the MCP servers' state in the status bar."""
        self._main.status.set_mcp(text)

    def copy_last_answer(self) -> None:
        """Copy the last assistant answer to the host clipboard (OSC 52 reaches it through docker exec)."""
        if not self._last_answer:
            self.notify("there is no answer to copy yet", severity="warning")
            return
        self.copy_to_clipboard(self._last_answer)
        self.notify(f"copied {len(self._last_answer)} characters")

    # ---- start-up and engine lifetime -------------------------------------------------------------------------

    def on_mount(self) -> None:
        gc.freeze()  # the modules imported so far live as long as the app (see _replay)
        self.push_screen(self._main)

    def on_unmount(self) -> None:
        gc.unfreeze()  # what a replay froze can be collected again once the app is gone

    def on_ready(self) -> None:
        """The first frame is on screen: now it is time to import and start the engine."""
        if self._engine_factory is not None:
            self._start_session()
        else:
            self._main.status.set_connection("no session open: ctrl+r picks one")
        if self._open_session_picker:
            self.action_open_sessions()

    def _start_session(self) -> None:
        """Start the engine; with a history provider, show the recorded events while it starts."""
        self._start_engine()
        if self._history_provider is not None:
            self._preview_history()

    @work(exclusive=True, group="engine", exit_on_error=False)
    async def _start_engine(self) -> None:
        """Build the engine after the first frame: this is where openai, agents and git get imported."""
        assert self._engine_factory is not None
        self._main.hide_error()
        self._main.status.set_connection("connecting…")
        engine = await self._engine_factory()
        self._main.status.set_connection("")
        self._attach(engine)
        self._handle_hangup(engine)
        if self._watch_workspace:
            await self._start_watcher(engine)
        _release_free_memory()

    @work(exclusive=True, group="preview", exit_on_error=False)
    async def _preview_history(self) -> None:
        """Show the session's recorded events while the engine imports and starts (seconds on a cold start).

        Reading the log needs none of the SDK. The engine, once attached, replays only what came after.
        """
        provider = self._history_provider
        if provider is None:
            return
        try:
            events = await asyncio.to_thread(provider)
        except Exception:  # the engine's own start reports what is wrong with this session
            return
        if self._engine is not None or not events:
            return  # the engine came first: its replay shows everything
        self._replay(events)
        self._shown_seq = events[-1].seq

    def _approval_mode_changed(self, event: Any) -> None:
        self._approval_mode = event.mode
        self._main.status.set_approval_mode(event.mode)

    def _handle_hangup(self, engine: Engine) -> None:
        """The engine takes SIGHUP to reload policies, but a closed terminal sends it too: then the app must end.

        Otherwise a dropped `docker exec` or ssh leaves the app running with no terminal, holding the session.
        """
        def on_sighup() -> None:
            stdin = sys.__stdin__
            try:
                # Not tcgetpgrp: a warm-started app's terminal is not its controlling terminal (tui/warm.py).
                termios.tcgetattr(stdin.fileno() if stdin is not None else 0)
            except (termios.error, OSError):  # the terminal hung up
                # Textual's writer thread can block forever on a dead terminal while shutting down: every event
                # is already fsynced and the session lock dies with the process, so a watchdog ends it for sure.
                watchdog = threading.Timer(HANGUP_GRACE_S, os._exit, args=(0,))
                watchdog.daemon = True
                watchdog.start()
                self.call_later(self.action_quit)
                return
            engine.policies.reload()

        # Outside the main thread, or without SIGHUP on this platform, the engine's own handling stays.
        with contextlib.suppress(RuntimeError, ValueError, NotImplementedError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, on_sighup)

    async def _start_watcher(self, engine: Engine) -> None:
        """Notice files the operator edits outside the agent; without inotify the session still works."""
        from core.watch import WorkspaceWatcher

        # Kept before it starts, so that closing the engine meanwhile stops it too.
        watcher = self._watcher = WorkspaceWatcher.for_engine(engine)
        try:
            await watcher.start()
        except OSError as exc:
            self._watcher = None
            await watcher.stop()
            self.notify(f"edits outside the agent will not be noticed: {exc}", severity="warning", markup=False)

    def _attach(self, engine: Engine) -> None:
        self._engine = engine
        hub = getattr(engine, "mcp_hub", None)
        if hub is not None and hub.statuses:
            healthy = sum(1 for s in hub.statuses if s.healthy)
            self.set_mcp_status(f"MCP {healthy}/{len(hub.statuses)}")
        self.workers.cancel_group(self, "preview")
        shown, self._shown_seq = self._shown_seq, None
        self._replay(engine.history if shown is None else [event for event in engine.history if event.seq > shown])
        self._unsubscribe = engine.subscribe(self._post_engine_event)
        self._show_next_approval()
        if self._initial_goal:
            goal, self._initial_goal = self._initial_goal, None
            self._engine_op(partial(engine.submit, goal))

    def _replay(self, events: Sequence[Event]) -> None:
        """Render recorded events without animation; a pending approval opens once the replay is done."""
        if self._freeze_on_replay:
            # What is alive now lives as long as the session: the modules (the SDK's too once the engine is up),
            # the screen and the recorded events. Frozen, the collector no longer walks them on each full
            # collection: rendering a 10,000-event resume spent 0.3 s in collections, 0.1 s with them frozen.
            gc.freeze()
        self._replaying = True
        self._main.transcript.begin_replay()
        self._main.tools.begin_replay()
        superseded = _superseded(events)
        try:
            for i, event in enumerate(events):
                if i not in superseded:
                    self.apply_event(event)
        finally:
            self._replaying = False
            self._main.transcript.end_replay()
            self._main.tools.end_replay()
            if self._replay_diff is not None:
                self._main.diff.show_diff(*self._replay_diff)
                self._replay_diff = None

    def _post_engine_event(self, event: Event) -> None:
        # Called by the engine (same event loop, maybe inside its task): post, never touch widgets here.
        self.post_message(EngineEvent(event))

    @on(EngineEvent)
    def _engine_event(self, message: EngineEvent) -> None:
        self.apply_event(message.event)

    async def _close_engine(self) -> None:
        engine, self._engine = self._engine, None
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            await watcher.stop()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if engine is not None:
            await engine.close()

    @on(Worker.StateChanged)
    def _worker_failed(self, event: Worker.StateChanged) -> None:
        """The one place worker failures land: engine start-up shows the banner, other ops a notification.

        A bad setting (read after the first frame) ends the app with exit code 2, as a usage error does;
        `agent-tui` prints `config_error` once the terminal is back.
        """
        if event.state != WorkerState.ERROR:
            return
        error = event.worker.error
        if isinstance(error, ConfigError):
            self._config_error = error
            self.exit(return_code=2)
            return
        message = getattr(error, "message", "") or str(error) or type(error).__name__
        hint = getattr(error, "hint", "")
        if event.worker.group == "engine":
            self._main.status.set_connection("not connected")
            self._main.show_error(message, hint)
        else:
            self.notify(f"{message}\nfix: {hint}" if hint else message, severity="error", markup=False)

    @work(group="ops", exit_on_error=False)
    async def _engine_op(self, op: Callable[[], Awaitable[object]]) -> None:
        await op()

    # ---- actions (bindings on the main screen, and the command palette) ---------------------------------------

    def action_retry_engine(self) -> None:
        """Run the engine factory again after a start failure."""
        if self.can_retry:
            self._start_engine()

    def action_interrupt(self) -> None:
        """Interrupt the running turn; the session stays usable."""
        if self._engine is not None and self._engine.busy:
            self._engine_op(self._engine.cancel)
        else:
            self.notify("nothing is running")

    def action_undo(self) -> None:
        """Undo the last applied file change."""
        if self._require_engine():
            self._engine_op(self._engine.undo)

    def action_redo(self) -> None:
        """Redo the change undone last."""
        if self._require_engine():
            self._engine_op(self._engine.redo)

    def action_open_sessions(self) -> None:
        """Open the session picker."""
        self._pick_session()

    def action_toggle_diff_fullscreen(self) -> None:
        self._main.action_toggle_diff_fullscreen()

    async def action_quit(self) -> None:
        """Close the engine (it records the state resume needs), then leave."""
        try:
            await self._close_engine()
        finally:
            self.exit()

    def _require_engine(self) -> bool:
        if self._engine is None:
            self.notify("the engine is not running", severity="warning")
        return self._engine is not None

    @work(exclusive=True, group="sessions", exit_on_error=False)
    async def _pick_session(self) -> None:
        if self._sessions_provider is None or self._on_open_session is None:
            self.notify("sessions cannot be opened from here", severity="warning")
            return
        from tui.screens.session_picker import SessionPickerScreen

        rows = await asyncio.to_thread(self._sessions_provider)
        chosen = await self.push_screen_wait(SessionPickerScreen(rows, current_workspace=self._workspace_label))
        if chosen:
            await self._on_open_session(chosen)

    @on(PromptInput.Changed)
    def _typing(self, event: PromptInput.Changed) -> None:
        # The first run's types are built while the message is typed, not after Enter (Engine.prepare_run).
        if self._engine is not None and event.text_area.text:
            self._engine.prepare_run()

    @on(PromptInput.Submitted)
    def _submit(self, message: PromptInput.Submitted) -> None:
        text = message.text.strip()
        if not text:
            return
        if self._engine is None:
            self.notify("the engine is not running yet", severity="warning")
            return
        if self._engine.busy:
            self.notify("a run is in progress: escape interrupts it", severity="warning")
            return
        message.prompt_input.clear()
        self._engine_op(partial(self._engine.submit, text))

    # ---- approvals --------------------------------------------------------------------------------------------

    def _show_next_approval(self) -> None:
        if self._approval_shown is not None or not self._approvals or self._engine is None:
            return
        from tui.screens.approval_screen import ApprovalScreen

        request = self._approvals[0]
        self._approval_shown = request.call_id
        screen = ApprovalScreen(request, queued=len(self._approvals) - 1, rule_text=request.suggested_rule)
        self.push_screen(screen, callback=partial(self._approval_answered, request))

    def _approval_answered(self, request: ApprovalRequested, answer: ApprovalAnswer | None) -> None:
        self._approval_shown = None
        self._drop_approval(request.call_id)
        if answer is not None and self._engine is not None:
            if answer.decision == "reject":
                self._engine_op(partial(self._engine.reject, request.call_id, answer.reason))
            else:
                self._engine_op(partial(self._engine.approve, request.call_id, always=answer.decision == "always"))
        self._show_next_approval()

    def _drop_approval(self, call_id: str) -> None:
        self._approvals = [request for request in self._approvals if request.call_id != call_id]
        self._main.status.set_pending_approvals(len(self._approvals))

    # ---- event handlers (called only through apply_event) -----------------------------------------------------

    def _session_started(self, event: Any) -> None:
        self._approval_mode = event.approval_mode
        self._main.status.set_session(session_id=event.session_id, workspace=self._workspace_label or event.workspace,
                                      model=event.model, approval_mode=event.approval_mode)

    def _run_started(self, event: Any) -> None:
        self._approval_mode = event.approval_mode
        self._main.status.set_approval_mode(event.approval_mode)
        if not self._replaying:
            self._main.status.turn_started()

    def _agent_changed(self, event: Any) -> None:
        self._main.transcript.add_note(f"▸ {event.role}" + (f", round {event.round}" if event.round else ""))

    def _assistant_message(self, event: Any) -> None:
        self._last_answer = event.text
        self._main.transcript.finish_assistant(event.message_id, event.text)

    def _approval_requested(self, event: Any) -> None:
        self._main.tools.set_status(event.call_id, "waiting")
        if event.diff:
            self._show_diff(event.diff, f"Diff: pending approval ({event.summary or event.tool})")
        if all(request.call_id != event.call_id for request in self._approvals):
            self._approvals.append(event)
        self._main.status.set_pending_approvals(len(self._approvals))
        if not self._replaying:
            self._show_next_approval()

    def _approval_decided(self, event: Any) -> None:
        self._drop_approval(event.call_id)
        self._main.tools.set_status(event.call_id, "rejected" if event.decision == "reject" else "running")
        if event.rule:
            self._main.transcript.add_note(f"always allowed for this session: {event.rule}")
        if event.call_id == self._approval_shown:
            # Decided elsewhere (another client): the open modal is stale.
            self.screen.dismiss(None)

    def _tool_call_finished(self, event: Any) -> None:
        self._main.tools.finish_call(event.call_id, event.tool, event.status, event.duration_ms,
                                     event.output_preview, event.output_chars)
        if event.diff:
            self._show_diff(event.diff, f"Diff: applied ({event.tool})")

    def _checkpoint_restored(self, event: Any) -> None:
        files = ", ".join(event.files) if event.files else "no files"
        self._main.transcript.add_note(f"{event.action}: restored {len(event.files)} file(s): {files}")

    def _file_changed(self, event: Any) -> None:
        if event.source == "external":
            self._main.transcript.add_note(f"edited outside the agent: {event.path}")

    def _review_finished(self, event: Any) -> None:
        verdict = "ok" if event.ok else "changes requested"
        findings = f"\n{event.findings}" if event.findings and not event.ok else ""
        self._main.transcript.add_note(f"review round {event.round}: {verdict}{findings}")

    def _run_finished(self, event: Any) -> None:
        self._main.transcript.finish_streams()
        if not self._replaying:
            self._main.status.turn_finished()
        if event.status in RUN_STATUS_NOTES:
            self._main.transcript.add_note(RUN_STATUS_NOTES[event.status])
        if event.status != "paused":
            # A finished run has no pending approvals left; only a paused run keeps them for later.
            kept = [r for r in self._approvals if r.call_id == self._approval_shown]
            if len(kept) != len(self._approvals):  # the status line shows the count: redrawn only when it changes
                self._approvals = kept
                self._main.status.set_pending_approvals(len(kept))

    def _show_diff(self, diff: str, title: str) -> None:
        if self._replaying:
            self._replay_diff = (diff, title)
        else:
            self._main.diff.show_diff(diff, title)
