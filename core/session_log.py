"""The session journal: an append-only, fsynced event log per session, its meta.json, and the store that lists them."""

from __future__ import annotations

import contextlib
import fcntl
import gc
import json
import os
import secrets
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import pydantic_core
from pydantic import BaseModel, ValidationError

from core.errors import SessionError
from core.events import (
    ApprovalDecided,
    ApprovalRequested,
    AssistantDelta,
    AssistantMessage,
    CheckpointRestored,
    ErrorEvent,
    Event,
    FileChanged,
    PlanUpdated,
    ReasoningDelta,
    ReviewFinished,
    RunFinished,
    RunStarted,
    SessionStatus,
    ToolCallDelta,
    ToolCallFinished,
    ToolCallRequested,
    UserMessage,
    parse_event,
)

EVENTS_FILE = "events.jsonl"
META_FILE = "meta.json"
RUN_STATE_FILE = "run_state.json"
CONVERSATION_FILE = "conversation.sqlite"
LOCK_FILE = "lock"
TORN_FILE = "events.jsonl.torn"

# meta.json costs a second fsync (plus a directory fsync), so ordinary events only refresh it this often.
META_EVERY_EVENTS = 50
META_EVERY_SECONDS = 2.0
# Streamed fragments are written (so a killed process loses none) but fsynced at most this often: an fsync
# takes 0.1 ms on an idle disk and tens of ms on a busy one, on the event loop that also reads the keys. Any
# other event's fsync makes every fragment before it durable too, and the whole message follows them anyway.
DELTA_SYNC_SECONDS = 0.5
DELTA_EVENTS = (AssistantDelta, ReasoningDelta, ToolCallDelta)
TITLE_MAX = 80

_FINISHED: dict[str, SessionStatus] = {
    "done": "done", "failed": "failed", "cancelled": "cancelled", "paused": "paused",
    "max_turns": "failed", "interrupted": "interrupted",
}


class SessionMeta(BaseModel):
    """What the picker shows without reading the log; derived from the events, so repair can rebuild it."""

    id: str
    title: str = ""
    goal: str = ""
    workspace: str = ""
    model: str | None = None
    base_url: str = ""
    approval_mode: str = "ask"
    status: SessionStatus = "new"
    created: float = 0.0
    updated: float = 0.0
    event_count: int = 0
    last_seq: int = 0
    pending_approvals: int = 0
    forked_from: str | None = None
    fork_seq: int | None = None
    client: str = ""


@dataclass
class SessionSummary:
    """One picker row. Broken sessions are listed too: ``meta`` is None when meta.json is missing or unreadable."""

    meta: SessionMeta | None
    id: str
    path: Path
    broken: bool = False
    problem: str = ""
    other_workspace: bool = False
    live: bool = False
    modified: float = 0.0  # mtime of events.jsonl (or the directory): orders sessions that have no meta

    @property
    def status(self) -> SessionStatus:
        if self.broken:
            return "broken"
        assert self.meta is not None
        return _effective_status(self.meta.status, self.live)

    @property
    def title(self) -> str:
        return self.meta.title if self.meta else ""

    @property
    def goal(self) -> str:
        return self.meta.goal if self.meta else ""

    @property
    def workspace(self) -> str:
        return self.meta.workspace if self.meta else ""

    @property
    def model(self) -> str | None:
        return self.meta.model if self.meta else None

    @property
    def updated(self) -> float:
        return self.meta.updated if self.meta and self.meta.updated else self.modified

    @property
    def event_count(self) -> int:
        return self.meta.event_count if self.meta else 0

    @property
    def pending_approvals(self) -> int:
        return self.meta.pending_approvals if self.meta else 0


class SessionLog:
    """One session directory. Appends are written, and fsynced (a streamed fragment: within DELTA_SYNC_SECONDS),
    before they return; one live process may write it at a time."""

    def __init__(self, directory: Path, meta: SessionMeta, *, meta_on_disk: bool = True) -> None:
        self.id = directory.name
        self.dir = directory
        self._meta = meta
        self._meta_stale = not meta_on_disk  # meta was derived in memory: write it once we are the writer
        self._mutex = threading.Lock()
        self._fd: int | None = None
        self._size = 0
        self._lock_fd: int | None = None
        self._unsaved = 0
        self._meta_written_at = time.monotonic()
        self._synced_at = 0.0
        self._unsynced = False

    def __enter__(self) -> SessionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def meta(self) -> SessionMeta:
        return self._meta

    @property
    def events_path(self) -> Path:
        return self.dir / EVENTS_FILE

    @property
    def conversation_db(self) -> Path:
        return self.dir / CONVERSATION_FILE

    # ------------------------------------------------------------------ events

    def append(self, event: Event) -> Event:
        """Record ``event`` with the next seq and the current time; it is on disk when this returns.

        On disk means written to the log: a killed process loses nothing. A streamed fragment may wait up to
        DELTA_SYNC_SECONDS for its fsync (the next other event, or close(), does it at once), so a power cut
        can lose the last half second of a message still streaming; every other event is fsynced first.
        """
        with self._mutex:
            if self._fd is None:
                self._open_for_append()
            assert self._fd is not None
            recorded = event.model_copy(update={"seq": self._meta.last_seq + 1, "ts": time.time()})
            data = (recorded.to_json() + "\n").encode("utf-8")
            try:
                _write_all(self._fd, data)
                if isinstance(event, DELTA_EVENTS) and time.monotonic() - self._synced_at < DELTA_SYNC_SECONDS:
                    self._unsynced = True
                else:
                    self._sync_log()
            except OSError as exc:
                # Cut a partial line now: the next append must not land behind half an event.
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, self._size)
                raise SessionError(f"could not record an event in {self.events_path}: {exc.strerror or exc}",
                                   hint="free disk space or fix the permissions of the state directory") from exc
            self._size += len(data)
            changed = _apply_event(self._meta, recorded)
            self._unsaved += 1
            if (changed or self._unsaved >= META_EVERY_EVENTS
                    or time.monotonic() - self._meta_written_at >= META_EVERY_SECONDS):
                self._write_meta()
            return recorded

    def read_events(self) -> list[Event]:
        """Every event in log order (see iter_events).

        The cyclic collector is paused meanwhile: the events hold no cycles, and each of its passes walked the
        growing list again (a 10,000-event log: ~60 passes, a quarter of the read's time).
        """
        enabled = gc.isenabled()
        gc.disable()
        try:
            return list(self.iter_events())
        finally:
            if enabled:
                gc.enable()

    def iter_events(self) -> Iterator[Event]:
        """Events in log order. A torn last line is skipped; a corrupt complete line raises SessionError."""
        return _iter_log(self.events_path, self.id)

    # ------------------------------------------------------------------ meta and run state

    def update_meta(self, **fields: Any) -> SessionMeta:
        """Set listed meta fields and write meta.json atomically."""
        settable = set(SessionMeta.model_fields) - {"id"}
        unknown = sorted(set(fields) - settable)
        if unknown:
            raise SessionError(f"cannot set meta field(s) {', '.join(unknown)} of session {self.id}",
                               hint=f"settable fields: {', '.join(sorted(settable))}")
        if "base_url" in fields:
            fields["base_url"] = _public_url(str(fields["base_url"] or ""))
        with self._mutex:
            try:
                self._meta = SessionMeta.model_validate({**self._meta.model_dump(), **fields})
            except ValidationError as exc:
                raise SessionError(f"invalid meta for session {self.id}: {_first_error(exc)}") from None
            self._write_meta()
            return self._meta

    def save_run_state(self, data: str) -> None:
        """Keep the SDK RunState of a paused run (written atomically, before anyone is asked to approve)."""
        _atomic_write(self.dir / RUN_STATE_FILE, data)

    def load_run_state(self) -> str | None:
        try:
            return (self.dir / RUN_STATE_FILE).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SessionError(f"cannot read the paused run of session {self.id}: {exc.strerror or exc}",
                               hint=f"check the permissions of {self.dir}") from exc

    def clear_run_state(self) -> None:
        try:
            (self.dir / RUN_STATE_FILE).unlink()
        except FileNotFoundError:
            return
        _fsync_dir(self.dir)

    # ------------------------------------------------------------------ lock

    def acquire(self) -> None:
        """Become the session's only writer. Refuses while another live process has it open."""
        if self._lock_fd is None:
            self._lock_fd = _lock_session(self.dir)

    def release(self) -> None:
        if self._lock_fd is not None:
            _unlock_session(self.dir, self._lock_fd)
            self._lock_fd = None

    def close(self) -> None:
        """Write meta if it lags the log, and let other processes open the session."""
        with self._mutex:
            if self._fd is not None:
                if self._unsynced:
                    with contextlib.suppress(OSError):
                        self._sync_log()
                    self._unsynced = False  # closing anyway: meta must not try again
                if self._unsaved:
                    self._write_meta()
                os.close(self._fd)
                self._fd = None
        self.release()

    # ------------------------------------------------------------------ internals

    def _open_for_append(self) -> None:
        self.acquire()
        try:
            fd = os.open(self.events_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise SessionError(f"cannot open {self.events_path} for writing: {exc.strerror or exc}",
                               hint="check the permissions of the state directory") from exc
        try:
            _remove_dead_temps(self.dir)
            _cut_torn_tail(fd, self.dir)
            size = os.fstat(fd).st_size
            last = _seq_of(_last_line(fd, size))
            if self._meta_stale or last != self._meta.last_seq:
                # meta lags the log (a crash between the event's fsync and meta's): rebuild it from the log.
                self._meta = _derive_meta(self._meta, self.iter_events())
                self._write_meta()
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._size = size

    def _sync_log(self) -> None:
        assert self._fd is not None
        os.fsync(self._fd)
        self._synced_at, self._unsynced = time.monotonic(), False

    def _write_meta(self) -> None:
        if self._unsynced:  # meta never counts events the log could still lose
            self._sync_log()
        _atomic_write(self.dir / META_FILE, self._meta.model_dump_json(indent=2))
        self._unsaved = 0
        self._meta_stale = False
        self._meta_written_at = time.monotonic()


class SessionStore:
    """All sessions under ``state_dir/sessions``: create, find, list, repair, fork and export them."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.root = self.state_dir / "sessions"

    def create(self, *, workspace: Path, model: str | None, base_url: str = "", approval_mode: str = "ask",
               client: str = "", forked_from: str | None = None, fork_seq: int | None = None) -> SessionLog:
        """A new empty session (status "new"); the engine records its session_started event."""
        now = time.time()
        meta = SessionMeta(id=self._new_id(), workspace=str(Path(workspace).resolve()), model=model,
                           base_url=_public_url(base_url), approval_mode=approval_mode, created=now, updated=now,
                           client=client, forked_from=forked_from, fork_seq=fork_seq)
        return SessionLog(self._materialise(meta, b"", None), meta)

    def open(self, id_or_prefix: str) -> SessionLog:
        """The session with this id or unique id prefix. A missing or corrupt meta.json is rebuilt from the log."""
        directory = self._find(id_or_prefix)
        meta, problem = _read_meta(directory)
        if meta is not None:
            return SessionLog(directory, meta)
        if not (directory / EVENTS_FILE).exists():
            raise SessionError(f"session {directory.name} has neither meta.json nor events.jsonl ({problem})",
                               hint=f"nothing can be recovered from it; delete {directory}")
        base = SessionMeta(id=directory.name, created=_mtime(directory))
        return SessionLog(directory, _derive_meta(base, _iter_log(directory / EVENTS_FILE, directory.name)),
                          meta_on_disk=False)

    def list(self, workspace: Path | None = None) -> list[SessionSummary]:
        """Every session, newest first, from meta.json alone; other workspaces and broken sessions are marked."""
        here = str(Path(workspace).resolve()) if workspace is not None else None
        rows = [self._summarise(self.root / name, here) for name in self._names()]
        rows.sort(key=lambda row: (row.updated, row.id), reverse=True)
        return rows

    def latest(self, workspace: Path) -> SessionSummary | None:
        """The most recently updated readable session of ``workspace`` (for --continue)."""
        return next((row for row in self.list(workspace) if not row.broken and not row.other_workspace), None)

    def repair(self, id_or_prefix: str | None = None) -> list[str]:
        """Rebuild meta from the log, cut a torn tail and move corrupt lines aside; returns a report."""
        directories = [self._find(id_or_prefix)] if id_or_prefix else [self.root / n for n in sorted(self._names())]
        if not directories:
            return [f"no sessions under {self.root}"]
        report: list[str] = []
        for directory in directories:
            report.extend(f"{directory.name}: {line}" for line in _repair_session(directory))
        return report

    def fork(self, id_or_prefix: str, at_seq: int | None = None) -> SessionLog:
        """A new session holding events 1..at_seq of another (same seq numbers); the source is untouched."""
        source = self.open(id_or_prefix)
        events = source.read_events()
        if not events:
            raise SessionError(f"session {source.id} has no events to fork",
                               hint=f"resume it instead: --resume {source.id}")
        last = events[-1].seq
        at = last if at_seq is None else at_seq
        if not any(event.seq == at for event in events):
            raise SessionError(f"session {source.id} has no event {at}",
                               hint=f"choose a seq between {events[0].seq} and {last}")
        kept = [event for event in events if event.seq <= at]
        src = source.meta
        now = time.time()
        meta = SessionMeta(id=self._new_id(), workspace=src.workspace, model=src.model, base_url=src.base_url,
                           approval_mode=src.approval_mode, client=src.client, created=now,
                           forked_from=source.id, fork_seq=at)
        for event in kept:
            _apply_event(meta, event)
        meta.updated = now
        run_state = source.load_run_state() if at == last and meta.status == "paused" else None
        if meta.status == "running" or (meta.status == "paused" and run_state is None):
            # The copy ends mid-run and has no live run to continue: say so rather than claim it runs.
            meta.status = "interrupted"
            meta.pending_approvals = 0
        data = b"".join((event.to_json() + "\n").encode("utf-8") for event in kept)
        return SessionLog(self._materialise(meta, data, run_state), meta)

    def export(self, id_or_prefix: str, fmt: Literal["md", "jsonl"]) -> str:
        """The session as a readable Markdown transcript, or as its JSONL events (torn tail excluded)."""
        if fmt not in ("md", "jsonl"):
            raise SessionError(f"unknown export format {fmt!r}", hint="use md or jsonl")
        log = self.open(id_or_prefix)
        events = log.read_events()
        if fmt == "jsonl":
            return "".join(event.to_json() + "\n" for event in events)
        meta = _derive_meta(log.meta, events)
        status = _effective_status(meta.status, _lock_holder_alive(log.dir))
        return _render_markdown(meta, events, status)

    # ------------------------------------------------------------------ internals

    def _names(self) -> list[str]:
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise SessionError(f"cannot read {self.root}: {exc.strerror or exc}",
                               hint="check the permissions of the state directory") from exc
        # Dot-directories are sessions still being created (or forked): not sessions yet.
        return [e.name for e in entries if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)]

    def _find(self, id_or_prefix: str) -> Path:
        key = id_or_prefix.strip()
        if not key or "/" in key or key.startswith("."):
            raise SessionError(f"{id_or_prefix!r} is not a session id",
                               hint="list them with `agent sessions list --all`")
        names = sorted(n for n in self._names() if n.startswith(key))
        if key in names or len(names) == 1:
            return self.root / (key if key in names else names[0])
        if not names:
            raise SessionError(f"no session matches {key!r} in {self.root}",
                               hint="list them with `agent sessions list --all`")
        shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        raise SessionError(f"{key!r} matches {len(names)} sessions: {shown}", hint="type more characters of the id")

    def _new_id(self) -> str:
        while True:
            session_id = time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)
            if not (self.root / session_id).exists():
                return session_id

    def _materialise(self, meta: SessionMeta, events: bytes, run_state: str | None) -> Path:
        """Build the session in a hidden directory and rename it into place, so no half-made session is listed."""
        final = self.root / meta.id
        staging = self.root / f".new-{meta.id}"
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            staging.mkdir(mode=0o700)
            fd = os.open(staging / EVENTS_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                _write_all(fd, events)
                os.fsync(fd)
            finally:
                os.close(fd)
            if run_state is not None:
                _atomic_write(staging / RUN_STATE_FILE, run_state)
            _atomic_write(staging / META_FILE, meta.model_dump_json(indent=2))
            os.rename(staging, final)
        except OSError as exc:
            raise SessionError(f"cannot create session {meta.id} in {self.root}: {exc.strerror or exc}",
                               hint="check free space and the permissions of the state directory") from exc
        _fsync_dir(self.root)
        return final

    def _summarise(self, directory: Path, here: str | None) -> SessionSummary:
        # The picker lists every session: plain string paths here, since pathlib's joins cost as much as the reads.
        try:
            modified = os.stat(os.path.join(directory, EVENTS_FILE)).st_mtime
            has_events = True
        except OSError:
            modified, has_events = _mtime(directory), False
        meta, problem = _read_meta(directory)
        if meta is not None and not has_events:
            problem = "events.jsonl is missing"
        elif meta is not None and meta.id != directory.name:
            problem = f"meta.json belongs to session {meta.id}"
        if problem:
            problem += f"; run `agent sessions repair {directory.name}`"
        return SessionSummary(
            meta=meta, id=directory.name, path=directory, broken=bool(problem), problem=problem,
            other_workspace=here is not None and meta is not None and meta.workspace != here,
            live=_lock_holder_alive(directory), modified=modified)


# ---------------------------------------------------------------------- deriving meta

def _apply_event(meta: SessionMeta, event: Event) -> bool:
    """Fold one recorded event into meta; True when something the picker shows (status, title...) changed."""
    meta.event_count += 1
    meta.last_seq = event.seq
    meta.updated = event.ts
    kind = event.type
    if kind == "session_started":
        meta.workspace = getattr(event, "workspace", "") or meta.workspace
        meta.model = getattr(event, "model", None) or meta.model
        meta.base_url = _public_url(getattr(event, "base_url", "") or meta.base_url)
        meta.approval_mode = getattr(event, "approval_mode", "") or meta.approval_mode
    elif kind in ("user_message", "run_started"):
        changed = kind == "run_started"
        if changed:
            meta.status = "running"
            meta.approval_mode = getattr(event, "approval_mode", "") or meta.approval_mode
        text = str(getattr(event, "text" if kind == "user_message" else "goal", "") or "").strip()
        if not meta.goal and text:
            meta.goal = text
            meta.title = make_title(text)
            changed = True
        return changed
    elif kind == "approval_requested":
        meta.status = "paused"
        meta.pending_approvals += 1
    elif kind == "approval_decided":
        meta.pending_approvals = max(0, meta.pending_approvals - 1)
        if meta.pending_approvals == 0:
            meta.status = "running"
    elif kind == "run_finished":
        meta.status = _FINISHED.get(str(getattr(event, "status", "")), "failed")
        if meta.status != "paused":
            meta.pending_approvals = 0
    elif kind == "error":
        if getattr(event, "recoverable", True):
            return False
        meta.status = "failed"
    elif kind == "approval_mode_changed":
        meta.approval_mode = str(getattr(event, "mode", "")) or meta.approval_mode
    else:
        return False
    return True


def _derive_meta(base: SessionMeta, events: Iterable[Event]) -> SessionMeta:
    """Meta rebuilt from the log, keeping what only meta knows (id, created, client, fork origin)."""
    meta = base.model_copy(update={"title": "", "goal": "", "status": "new", "event_count": 0, "last_seq": 0,
                                   "pending_approvals": 0, "updated": base.created})
    for event in events:
        if not meta.created:
            meta.created = event.ts
        _apply_event(meta, event)
    return meta


def _effective_status(status: SessionStatus, live: bool) -> SessionStatus:
    # "running" with no live process holding the session means that process died mid-run.
    return "interrupted" if status == "running" and not live else status


def make_title(text: str) -> str:
    """The first non-blank line of a goal, whitespace collapsed, at most TITLE_MAX characters."""
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    line = " ".join(line.split())
    return line if len(line) <= TITLE_MAX else line[: TITLE_MAX - 1].rstrip() + "…"


def _public_url(url: str) -> str:
    """The endpoint URL without user:password or query string, so no credential reaches meta.json."""
    if not url:
        return ""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _read_meta(directory: Path) -> tuple[SessionMeta | None, str]:
    try:
        with open(os.path.join(directory, META_FILE), "rb") as handle:
            return SessionMeta.model_validate_json(handle.read()), ""
    except FileNotFoundError:
        return None, "meta.json is missing"
    except OSError as exc:
        return None, f"meta.json is unreadable ({exc.strerror or exc})"
    except ValidationError as exc:
        return None, f"meta.json is corrupt ({_first_error(exc)})"


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "document"
    return f"{where}: {err.get('msg', 'invalid')}"


# ---------------------------------------------------------------------- the log file

def _decode(raw: bytes) -> Any:
    """One JSON line. pydantic-core parses a long log about three times faster than json; json still reads
    what pydantic-core refuses (the escaped lone surrogates to_json writes for non-UTF-8 file names)."""
    try:
        return pydantic_core.from_json(raw)
    except ValueError:
        return json.loads(raw)


def _parse_line(raw: bytes) -> Event:
    """One log line as an event; ValueError says why it is not one."""
    try:
        data = _decode(raw)
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("seq"), int):
        raise ValueError("not an event object with a seq")
    try:
        return parse_event(data)
    except ValidationError as exc:
        raise ValueError(f"invalid {data.get('type')!r} event: {_first_error(exc)}") from None


def _iter_log(path: Path, session_id: str) -> Iterator[Event]:
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise SessionError(f"session {session_id} has no {EVENTS_FILE}",
                           hint=f"run `agent sessions repair {session_id}`") from None
    with handle:
        for number, raw in enumerate(handle, 1):
            if not raw.endswith(b"\n"):
                return  # torn last line: the append that wrote it never returned
            if not raw.strip():
                continue
            try:
                yield _parse_line(raw)
            except ValueError as exc:
                raise SessionError(f"{path}: line {number} is not a valid event ({exc})",
                                   hint=f"run `agent sessions repair {session_id}` to move it aside") from None


def _seq_of(line: bytes) -> int:
    if not line:
        return 0
    try:
        seq = json.loads(line).get("seq")
    except (ValueError, AttributeError):
        return -1  # unreadable: forces a full read, which names the bad line
    return seq if isinstance(seq, int) else -1


def _last_line(fd: int, end: int) -> bytes:
    """The last non-blank line of the first ``end`` bytes of ``fd`` (which end with a newline), read backwards."""
    block, pos, buf = 65536, end, b""
    while True:
        body = buf.rstrip(b"\n")
        if b"\n" in body or pos == 0:
            return body.rpartition(b"\n")[2]
        start = max(0, pos - block)
        buf = os.pread(fd, pos - start, start) + buf
        pos, block = start, block * 2


def _last_newline(fd: int, size: int) -> int:
    """Offset of the last newline in ``fd`` (-1 if none)."""
    block, pos = 65536, size
    while pos > 0:
        start = max(0, pos - block)
        found = os.pread(fd, pos - start, start).rfind(b"\n")
        if found >= 0:
            return start + found
        pos = start
    return -1


def _cut_torn_tail(fd: int, directory: Path) -> None:
    """Truncate the log after its last newline, keeping the cut fragment in events.jsonl.torn."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    keep = _last_newline(fd, size) + 1
    fragment = os.pread(fd, size - keep, keep)
    torn = os.open(directory / TORN_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        _write_all(torn, fragment + b"\n")
        os.fsync(torn)
    finally:
        os.close(torn)
    os.ftruncate(fd, keep)
    os.fsync(fd)


def _repair_session(directory: Path) -> list[str]:
    try:
        lock = _lock_session(directory)
    except SessionError as exc:
        return [f"skipped: {exc.message}"]
    try:
        return _repair_locked(directory)
    finally:
        _unlock_session(directory, lock)


def _repair_locked(directory: Path) -> list[str]:
    sid = directory.name
    path = directory / EVENTS_FILE
    old, problem = _read_meta(directory)
    report: list[str] = []
    if not path.exists():
        if old is None:
            return [f"cannot repair: no {EVENTS_FILE} and {problem}; nothing to recover, delete {directory}"]
        _atomic_write(path, "")
        report.append(f"{EVENTS_FILE} was missing: created an empty log (meta.json counted {old.event_count} events)")
    raw = path.read_bytes()
    keep = raw.rfind(b"\n") + 1
    torn = raw[keep:]
    good: list[bytes] = []
    bad: list[bytes] = []
    events: list[Event] = []
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    corrupt_name = f"{EVENTS_FILE}.corrupt-{stamp}"
    blank = 0
    for number, line in enumerate(raw[:keep].split(b"\n")[:-1], 1):
        if not line.strip():
            blank += 1
            continue
        try:
            event = _parse_line(line)
        except ValueError as exc:
            bad.append(line + b"\n")
            report.append(f"line {number} moved to {corrupt_name}: {exc}")
            continue
        if events and event.seq <= events[-1].seq:
            report.append(f"warning: line {number} has seq {event.seq} after seq {events[-1].seq}")
        events.append(event)
        good.append(line + b"\n")
    if torn:
        with (directory / TORN_FILE).open("ab") as handle:
            handle.write(torn + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        report.append(f"cut a torn last line ({len(torn)} bytes) into {TORN_FILE}")
    if bad:
        _atomic_write(directory / corrupt_name, b"".join(bad))
    if blank:
        report.append(f"dropped {blank} blank line(s)")
    if torn or bad or blank:
        _atomic_write(path, b"".join(good))
    base = old if old is not None else SessionMeta(id=sid, created=events[0].ts if events else _mtime(directory))
    base = base.model_copy(update={"id": sid})
    meta = _derive_meta(base, events)
    if meta.status == "running":
        meta.status = "interrupted"  # we hold the lock, so no process is running it
    if old is None:
        report.append(f"meta.json rebuilt from {len(events)} events ({problem})")
    elif meta != old:
        changed = [name for name in SessionMeta.model_fields if getattr(meta, name) != getattr(old, name)]
        report.append(f"meta.json updated from the log ({', '.join(changed)})")
    if old is None or meta != old:
        _atomic_write(directory / META_FILE, meta.model_dump_json(indent=2))
    return report or [f"ok ({len(events)} events)"]


# ---------------------------------------------------------------------- lock

def _lock_session(directory: Path) -> int:
    """Hold an exclusive flock on ``lock`` (the kernel drops it when we die) and write our pid into it."""
    path = directory / LOCK_FILE
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise SessionError(f"cannot lock session {directory.name}: {exc.strerror or exc}",
                               hint=f"check the permissions of {directory}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = _lock_pid(directory)[0]
            who = f"process {holder}" if holder else "another process"
            raise SessionError(f"session {directory.name} is open in {who}",
                               hint=f"close it there first, or fork it: agent sessions fork {directory.name}") from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder released (unlinked) the file between our open and flock: lock the new one
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {_start_time(os.getpid()) or 0}\n".encode(), 0)
    os.fsync(fd)
    return fd


def _unlock_session(directory: Path, fd: int) -> None:
    # Unlink while still holding the flock, so a waiter never locks a file that is about to vanish.
    with contextlib.suppress(FileNotFoundError):
        (directory / LOCK_FILE).unlink()
    os.close(fd)


def _lock_pid(directory: Path) -> tuple[int, int | None]:
    """(pid, process start time) written in the lock file; (0, None) when there is none."""
    try:
        with open(os.path.join(directory, LOCK_FILE), encoding="utf-8") as handle:
            fields = handle.read().split()
        return int(fields[0]), int(fields[1]) if len(fields) > 1 and fields[1] != "0" else None
    except (OSError, ValueError, IndexError):
        return 0, None


def _lock_holder_alive(directory: Path) -> bool:
    return lock_holder(directory) is not None


def lock_holder(directory: Path) -> int | None:
    """The pid of the live process that has the session open, or None."""
    pid, start = _lock_pid(directory)
    return pid if _process_alive(pid, start) else None


def _process_alive(pid: int, start: int | None = None) -> bool:
    """Whether ``pid`` runs and is still the process that wrote the lock (pids get reused after a restart)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return True  # no /proc: signal 0 is all we know
    if fields[0] in ("Z", "X"):
        return False  # killed, not yet reaped
    return start is None or int(fields[19]) == start


def _start_time(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19])
    except (OSError, ValueError, IndexError):
        return None


# ---------------------------------------------------------------------- files

def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _atomic_write(path: Path, data: str | bytes) -> None:
    """Temp file in the same directory + fsync + rename + directory fsync: readers see old or new, never half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            _write_all(fd, data.encode("utf-8") if isinstance(data, str) else data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise SessionError(f"cannot write {path}: {exc.strerror or exc}",
                           hint="check free space and the permissions of the state directory") from exc
    _fsync_dir(path.parent)


def _remove_dead_temps(directory: Path) -> None:
    """Delete temp files of atomic writes whose writer was killed mid-write (their name carries its pid)."""
    for entry in os.scandir(directory):
        name = entry.name
        if name.startswith(".") and name.endswith(".tmp"):
            pid = name[:-4].rpartition(".")[2].partition("-")[0]
            if pid.isdigit() and not _process_alive(int(pid)):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


# ---------------------------------------------------------------------- Markdown export

def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _short_args(arguments: str, limit: int = 120) -> str:
    try:
        data = json.loads(arguments) if arguments else {}
    except ValueError:
        return _clip(arguments, limit)
    if not isinstance(data, dict):
        return _clip(json.dumps(data, ensure_ascii=False), limit)
    parts = [f"{key}={_clip(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False), 40)}"
             for key, value in data.items()]
    return _clip(", ".join(parts), limit)


def _tool_line(request: ToolCallRequested | None, finished: ToolCallFinished | None) -> str:
    tool = request.tool if request else finished.tool if finished else "?"
    line = f"- tool `{tool}`"
    if request and request.arguments:
        line += f" ({_short_args(request.arguments)})"
    if finished is not None:
        line += f" → {finished.status}"
        if finished.duration_ms:
            line += f" in {finished.duration_ms:.0f} ms"
        if not finished.ok and finished.output_preview:
            line += f": {_clip(finished.output_preview, 160)}"
    elif request is not None and request.decision == "deny":
        line += f" → refused by policy ({request.reason})" if request.reason else " → refused by policy"
    else:
        line += " → no result recorded"
    return line


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts)) if ts else "?"


def _render_markdown(meta: SessionMeta, events: list[Event], status: str) -> str:
    head = [f"# {meta.title or 'Untitled session'}", "",
            f"- Session: `{meta.id}`",
            f"- Workspace: `{meta.workspace}`",
            f"- Model: {meta.model or '(endpoint default)'}",
            f"- Started: {_when(meta.created)}; last event: {_when(meta.updated)}",
            f"- Status: {status}"]
    if meta.forked_from:
        head.append(f"- Forked from `{meta.forked_from}` at event {meta.fork_seq}")
    if meta.goal:
        head += ["", "## Goal", "", meta.goal]
    blocks: list[str] = []
    streaming: dict[str, tuple[int, list[str]]] = {}  # message id -> (block index, text so far)
    calls: dict[str, tuple[int, ToolCallRequested]] = {}
    for event in events:
        if isinstance(event, UserMessage):
            blocks.append(f"### User\n\n{event.text}")
        elif isinstance(event, AssistantDelta):
            if event.message_id not in streaming:
                streaming[event.message_id] = (len(blocks), [])
                blocks.append("")
            streaming[event.message_id][1].append(event.text)
        elif isinstance(event, AssistantMessage):
            block = f"### Assistant ({event.role})\n\n{event.text}"
            if event.message_id in streaming:
                blocks[streaming.pop(event.message_id)[0]] = block
            else:
                blocks.append(block)
        elif isinstance(event, PlanUpdated):
            marks = {"done": "[x]", "in_progress": "[ ]", "pending": "[ ]"}
            lines = ["**Plan**", ""] + [
                f"- {marks[step.status]} {step.title}" + (" *(in progress)*" if step.status == "in_progress" else "")
                for step in event.steps]
            blocks.append("\n".join(lines + ([f"\n{event.note}"] if event.note else [])))
        elif isinstance(event, ToolCallRequested):
            calls[event.call_id] = (len(blocks), event)
            blocks.append(_tool_line(event, None))
        elif isinstance(event, ToolCallFinished):
            if event.call_id in calls:
                index, request = calls.pop(event.call_id)
                blocks[index] = _tool_line(request, event)
            else:
                blocks.append(_tool_line(None, event))
        elif isinstance(event, ApprovalRequested):
            what = event.summary or _short_args(event.arguments)
            blocks.append(f"**Approval requested** for `{event.tool}`: {what}"
                          + (f" (guarded: {event.reason})" if event.reason else ""))
        elif isinstance(event, ApprovalDecided):
            verdict = {"approve": "Approved", "always": "Always allowed", "reject": "Rejected"}[event.decision]
            text = f"**{verdict}**" + (f" with rule `{event.rule}`" if event.rule else "")
            blocks.append(text + (f": {event.reason}" if event.reason else ""))
        elif isinstance(event, FileChanged):
            blocks.append(f"- file `{event.path}` {event.change} ({event.source})")
        elif isinstance(event, CheckpointRestored):
            blocks.append(f"**{event.action.replace('_', ' ').capitalize()}**: {', '.join(event.files) or 'no files'}")
        elif isinstance(event, ReviewFinished):
            verdict = "passed" if event.ok else "changes requested"
            findings = f"\n\n{event.findings}" if event.findings else ""
            blocks.append(f"**Review** (round {event.round}): {verdict}{findings}")
        elif isinstance(event, ErrorEvent):
            blocks.append(f"**Error:** {event.message}" + (f"\n\nFix: {event.hint}" if event.hint else ""))
        elif isinstance(event, RunStarted):
            blocks.append(f"---\n\n*Run started ({event.approval_mode} mode)*")
        elif isinstance(event, RunFinished):
            blocks.append(f"*Run finished: {event.status}*" + (f" — {event.summary}" if event.summary else ""))
    for index, parts in streaming.values():
        blocks[index] = "### Assistant (cut off)\n\n" + "".join(parts)
    return "\n".join([*head, "", "## Transcript", "", "\n\n".join(blocks), "", f"**Final status:** {status}", ""])
