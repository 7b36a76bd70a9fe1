"""Watches the workspace for files changed outside the agent and tells the engine about them."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from watchfiles import Change, DefaultFilter
from watchfiles._rust_notify import RustNotify

from core.events import ApprovalRequested, Event, FileChanged, ToolCallFinished, ToolCallRequested, ToolCallStarted

if TYPE_CHECKING:
    from core.engine import Engine

log = logging.getLogger(__name__)

# A command's side effects can reach the watcher a little after the command's tool call finished.
COMMAND_GRACE_S = 2.0
# A change is judged only after this long, so that the engine's own file_changed event can arrive first.
SETTLE_S = 0.5
# How often pending changes are looked at; nothing polls while none are pending.
POLL_S = 0.1
# The watch thread's sleep between looks at inotify's queue and the stop flag: a batch of changes ends after
# this long without a new one, and stop() waits at most this long for the thread.
STEP_MS = 100

Fingerprint = tuple[int, int, int] | None


class WorkspaceFilter(DefaultFilter):
    """watchfiles' defaults (.git, __pycache__, swap and backup files), vim's probe, and our own temp files."""

    ignore_entity_patterns = (
        *DefaultFilter.ignore_entity_patterns,
        r"^4913$",  # vim checks that it may write a directory by creating this file
        r"^\..+\.[0-9a-f]{12}\.tmp$",  # tools.workspace.atomic_write's temp file, renamed over the target
        r"^\.dev-agent-restore-[0-9a-f]{12}$",  # core.checkpoints' temp file while it restores a file
    )

    def __init__(self, ignore_paths: tuple[Path, ...] = ()) -> None:
        self.ignore_paths = tuple(str(p) for p in ignore_paths)
        super().__init__()


def fingerprint(path: Path) -> Fingerprint:
    """What identifies one version of a file: atomic writes change the inode, edits change mtime or size."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class WorkspaceWatcher:
    """Reports workspace-relative paths changed outside the agent, once the agent's own writes are set aside.

    Attached to an engine, it learns what the agent does from the engine's events: a file the agent (or an
    undo / redo) wrote is the agent's as long as it still looks the way the agent left it; anything that
    changes while a run_command is running, or shortly after, belongs to that command. Changes seen during
    a run are judged when the run is idle, so that the engine's event for a write is always seen first.
    """

    def __init__(self, workspace: Path, on_change: Callable[[list[str]], None], *,
                 ignore: Callable[[str], bool] | None = None, debounce_ms: int = 300,
                 ignore_dirs: tuple[Path, ...] = ()) -> None:
        self.workspace = workspace.resolve()
        self._on_change = on_change
        self._ignore = ignore
        self._debounce_ms = debounce_ms
        self._filter = WorkspaceFilter(tuple(d.resolve() for d in ignore_dirs
                                             if d.resolve().is_relative_to(self.workspace)))
        self._engine: Engine | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._agent_files: dict[str, Fingerprint] = {}
        self._commands: set[str] = set()
        self._command_ended = float("-inf")
        self._pending: dict[str, float] = {}
        self._changed = asyncio.Event()
        self._stop = threading.Event()
        self._thread_done: asyncio.Future[None] | None = None
        self._report_task: asyncio.Task[None] | None = None

    @classmethod
    def for_engine(cls, engine: Engine, *, debounce_ms: int = 300) -> WorkspaceWatcher:
        """A watcher of a started engine's workspace that reports to it and hides what its policy hides."""
        watcher = cls(engine.workspace.root, engine.notice_external_changes,
                      ignore=lambda rel: engine.workspace.rules.is_hidden(rel), debounce_ms=debounce_ms,
                      ignore_dirs=(engine.settings.state_dir,))
        watcher.attach(engine)
        return watcher

    def attach(self, engine: Engine) -> None:
        """Follow this engine's events to tell the agent's changes from everyone else's."""
        self._engine = engine
        self._unsubscribe = engine.subscribe(self._on_event)

    async def start(self) -> None:
        """Start watching; returns once the watch is in place, so a change made right after is seen."""
        if not self.workspace.is_dir():
            # watchfiles would quietly watch nothing (unreadable paths are skipped, see ignore_permission_denied)
            raise FileNotFoundError(f"the workspace {self.workspace} is not a directory")
        self._stop.clear()
        # The inotify watches are in place when RustNotify returns. It is driven from a thread of its own that
        # blocks until something changes: awatch's periodic timeouts woke the event loop five times a second.
        notify = RustNotify([str(self.workspace)], False, _force_polling(), 300, True, True)
        loop = asyncio.get_running_loop()
        self._thread_done = loop.create_future()
        threading.Thread(target=self._watch, args=(notify, loop, self._thread_done), name="workspace-watch",
                         daemon=True).start()
        self._report_task = asyncio.create_task(self._report(), name="workspace-report")

    async def stop(self) -> None:
        self._stop.set()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        report, self._report_task = self._report_task, None
        if report is not None:
            report.cancel()
            try:
                await report
            except asyncio.CancelledError:
                pass
        done, self._thread_done = self._thread_done, None
        if done is not None:
            await done  # the thread sees the stop flag within STEP_MS

    # ---- what the agent did ---------------------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        if isinstance(event, FileChanged) and event.source != "external":
            self._agent_files[event.path] = fingerprint(self.workspace / event.path)
        elif isinstance(event, (ToolCallStarted, ToolCallRequested, ApprovalRequested)):
            if event.tool == "run_command":
                self._commands.add(event.call_id)
        elif isinstance(event, ToolCallFinished) and event.call_id in self._commands:
            self._commands.discard(event.call_id)
            self._command_ended = time.monotonic()

    def _busy(self) -> bool:
        return self._engine is not None and self._engine.busy

    def _command_running(self, now: float) -> bool:
        # A command waiting for approval is not running: only a busy run executes it.
        return (bool(self._commands) and self._busy()) or now - self._command_ended < COMMAND_GRACE_S

    def _agent_wrote(self, rel: str) -> bool:
        if rel not in self._agent_files:
            return False
        return self._agent_files[rel] == fingerprint(self.workspace / rel)

    # ---- the watch ------------------------------------------------------------------------------------------

    def _watch(self, notify: RustNotify, loop: asyncio.AbstractEventLoop, done: asyncio.Future[None]) -> None:
        """The watch thread: wait for batches of changes (no timeout: an idle workspace costs nothing)."""
        try:
            with notify:
                while True:
                    changes = notify.watch(self._debounce_ms, STEP_MS, 0, self._stop)
                    if changes == "stop":
                        break
                    if isinstance(changes, set):
                        loop.call_soon_threadsafe(self._received, changes)
        except Exception:  # the watch died (the workspace went away): the session goes on without it
            log.exception("the workspace watch failed")
        finally:
            try:
                loop.call_soon_threadsafe(_set_done, done)
            except RuntimeError:  # the event loop is already closed: nobody waits for the thread
                pass

    def _received(self, raw_changes: set[tuple[int, str]]) -> None:
        now = time.monotonic()
        if self._command_running(now):
            return
        for raw_change, raw in raw_changes:
            change = Change(raw_change)
            if not self._filter(change, raw):
                continue
            rel = self._relative(change, raw)
            if rel is not None:
                self._pending.setdefault(rel, now)
        if self._pending:
            self._changed.set()

    def _relative(self, change: Change, raw: str) -> str | None:
        path = Path(raw)
        try:
            rel = path.relative_to(self.workspace).as_posix()
        except ValueError:
            return None
        if change != Change.deleted and path.is_dir():
            return None
        if self._ignore is not None and self._ignore(rel):
            return None
        return rel

    async def _report(self) -> None:
        while True:
            if not self._pending:
                self._changed.clear()
                await self._changed.wait()
            await asyncio.sleep(POLL_S)
            if not self._pending or self._busy():
                continue
            now = time.monotonic()
            ready = [rel for rel, seen in self._pending.items() if now - seen >= SETTLE_S]
            for rel in ready:
                del self._pending[rel]
            external = sorted(rel for rel in ready if not self._agent_wrote(rel))
            if not external:
                continue
            for rel in external:
                self._agent_files.pop(rel, None)
            try:
                self._on_change(external)
            except Exception:  # a failing receiver must not stop the watch
                log.exception("reporting external changes failed")


def _set_done(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)


def _force_polling() -> bool:
    """Polling instead of inotify when the operator asks for it, as watchfiles' own functions allow."""
    value = os.environ.get("WATCHFILES_FORCE_POLLING", "")
    return bool(value) and value.lower() not in {"false", "disable", "disabled"}
