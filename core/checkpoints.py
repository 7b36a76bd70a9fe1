"""Shadow-git checkpoints of the workspace, so every applied change (a shell command's too) can be undone."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import stat
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from core.errors import AgentError
from core.session_log import SessionStore

if TYPE_CHECKING:
    from git import Git

# Files above this size are never snapshotted: a model's build artefact or dataset would bloat the
# store on every checkpoint. Undo leaves such files alone (it never deletes or overwrites them).
MAX_FILE_BYTES = 50 * 1024 * 1024
# Each session keeps its newest checkpoints and undo/redo steps up to this many; older ones are forgotten,
# and their objects leave the store at the next garbage collection.
KEEP_CHECKPOINTS = 500
# Opening a store collects garbage when the last collection is older than this.
GC_INTERVAL_S = 24 * 60 * 60
# Loose objects past this count are packed by a collection (git's own default for gc.auto).
GC_LOOSE_OBJECTS = 6700

_SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_CHECKPOINT_ID = re.compile(r"[0-9a-f]{4,64}")
_GITLINK = "160000"
_SYMLINK = "120000"
_EXECUTABLE = "100755"
_IDENTITY = {"name": "dev-agent checkpoints", "email": "checkpoints@dev-agent.invalid"}
_SHADOW_CONFIG = {
    "core.autocrlf": "false",
    "core.safecrlf": "false",
    "core.filemode": "true",
    "core.symlinks": "true",
    "core.fsmonitor": "false",
    "core.hooksPath": os.devnull,
    "gc.auto": "0",
}


class CheckpointError(AgentError):
    """A checkpoint could not be taken, listed or restored."""


@dataclass(frozen=True)
class Checkpoint:
    """The workspace as it was just before one change; ``files_changed_after`` is known once the change is."""

    id: str
    label: str
    created: float
    files_changed_after: tuple[str, ...] = ()


@dataclass(frozen=True)
class RestoreResult:
    """What an undo, redo or single-file restore did on disk.

    ``files`` are workspace-relative paths that were added, modified or deleted; ``skipped`` are paths
    the checkpoint differs on but that were left alone because overwriting them would lose data the
    snapshots do not hold (an ignored or over-size file now in the way, a non-directory blocking a parent).
    """

    action: Literal["undo", "redo", "restore_file"]
    checkpoint: str
    files: tuple[str, ...]
    skipped: tuple[str, ...] = ()


@dataclass
class _Step:
    """One undoable change: the snapshot before it and, once one is taken, the snapshot after it.

    Restoring never reads ``after`` of a change that ``record_after`` completed: undo snapshots the
    workspace as it is and redo returns to that, so a file tool's write needs no ``after`` snapshot.
    """

    before: str
    after: str | None
    label: str
    paths: list[str] = field(default_factory=list)


@dataclass
class _History:
    """A session's undo and redo stacks and its checkpoints, persisted as JSON."""

    undo: list[_Step] = field(default_factory=list)
    redo: list[_Step] = field(default_factory=list)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class _Snapshot:
    """This store's last snapshot, kept in memory so ``record_after`` can tell what changed without a scan.

    ``fingerprints`` are what the paths it named held when they were staged (None: only a scan can tell).
    """

    commit: str
    tree: str
    fingerprints: dict[str, tuple[object, ...] | None]


@dataclass(frozen=True)
class _Change:
    """One line of ``git diff-tree --raw``."""

    old_mode: str
    new_mode: str
    new_sha: str
    status: str
    path: str


class CheckpointStore:
    """Undo/redo for one workspace and session, stored in a git repository of its own under the state dir.

    The workspace's own ``.git`` is never read or written: every git call runs with its own GIT_DIR,
    index and an isolated configuration. Undo only touches files the snapshots track, so ignored and
    never-snapshotted files survive it.

    Checkpoint commits have no parents: the undo histories under ``stacks/`` are what keeps them, so
    forgetting a checkpoint there frees it. Garbage collection (at most once every ``GC_INTERVAL_S``,
    when a store is opened) drops the histories of sessions whose directory was deleted from the state
    dir, trims every history to ``KEEP_CHECKPOINTS``, points one ref at each checkpoint still listed and
    lets git prune the rest.
    """

    def __init__(self, state_dir: Path, workspace: Path, *, session_id: str = "default") -> None:
        if not _SESSION_ID.fullmatch(session_id):
            raise CheckpointError(
                f"invalid session id {session_id!r} for checkpoints",
                hint="use letters, digits, '.', '_' and '-' only",
            )
        self.workspace = Path(workspace).resolve()
        if not self.workspace.is_dir():
            raise CheckpointError(
                f"workspace {self.workspace} is not a directory", hint="set AGENT_WORKSPACE to an existing directory"
            )
        state = Path(state_dir).resolve()
        if state == self.workspace:
            raise CheckpointError(
                "the state directory is the workspace itself, so checkpoints would snapshot themselves",
                hint="set AGENT_STATE_DIR to a directory outside the workspace",
            )
        key = hashlib.sha1(os.fsencode(str(self.workspace)), usedforsecurity=False).hexdigest()[:16]
        self.shadow_dir = state / "checkpoints" / key
        self.session_id = session_id
        self._git_dir = self.shadow_dir / "git"
        self._stacks_dir = self.shadow_dir / "stacks"
        self._history_file = self._stacks_dir / f"{session_id}.json"
        self._sessions_dir = SessionStore(state).root
        self._last: _Snapshot | None = None
        # The tree of the shadow index as it was last written, keyed by the index's checksum.
        self._index_tree: tuple[bytes, str] | None = None
        # Session logs and the store itself live in the state dir; restoring them would corrupt them.
        self._excluded: list[str] = []
        if state.is_relative_to(self.workspace):
            self._excluded.append(state.relative_to(self.workspace).as_posix())
        # GitPython (~2.5 MB) loads, and the repository is created, with the first git command: an engine
        # that never writes never needs them.
        self._git: Git | None = None
        self._repo_ready = False
        try:
            (self.shadow_dir / "stacks").mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise CheckpointError(
                f"cannot create the checkpoint store {self.shadow_dir}: {err.strerror}",
                hint="make AGENT_STATE_DIR writable",
            ) from err
        with self._locked():
            self._collect_garbage_if_due()

    # ------------------------------------------------------------------ public API

    @property
    def can_undo(self) -> bool:
        return bool(self._load().undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._load().redo)

    def snapshot(self, label: str, *, paths: Sequence[str] = ()) -> str:
        """Record the whole workspace before a change; ``paths`` are force-included even if ignored.

        Naming ``paths`` also declares that the change touches only them (a file tool's write), so
        ``record_after`` compares just those instead of scanning; a change of unknown reach (a shell
        command) names none.
        """
        rel_paths = [self._relative(p) for p in paths]
        with self._locked():
            history = self._load()
            # Taken before staging: a write racing the staging then reads as a change, never as none.
            fingerprints = {rel: self._fingerprint(rel) for rel in rel_paths}
            sha, tree = self._commit_workspace(label, rel_paths)
            self._last = _Snapshot(sha, tree, fingerprints)
            history.undo.append(_Step(before=sha, after=None, label=label, paths=rel_paths))
            history.redo.clear()
            history.checkpoints.append({"id": sha, "label": label, "created": time.time(), "changed": None})
            self._save(history)
            return sha

    def record_after(self) -> None:
        """Note which files the last change touched; a change of unknown reach is snapshotted to find out.

        A file tool's write (a snapshot that named its paths, taken by this store) is told by comparing
        those paths with what the snapshot staged, and only they are staged: no scan, no commit.
        """
        with self._locked():
            history = self._load()
            if not history.undo:
                raise CheckpointError(
                    "no checkpoint to complete: nothing was snapshotted in this session",
                    hint="call snapshot() before applying the change",
                )
            step = history.undo[-1]
            changed = self._stage_named_paths(step)
            if changed is None:
                step.after, tree = self._commit_workspace(f"after: {step.label}", step.paths)
                last = self._last
                unchanged = last is not None and last.commit == step.before and last.tree == tree
                changed = [] if unchanged else self._changed_paths(step.before, step.after)
            _note_changes(history, step.before, changed)
            self._save(history)

    def undo(self) -> RestoreResult:
        """Put the workspace back as it was before the last change; the current state becomes redoable."""
        with self._locked():
            history = self._load()
            if not history.undo:
                raise CheckpointError("nothing to undo", hint="no applied change of this session is left to undo")
            step = history.undo.pop()
            # Snapshot first: the change may never have been record_after'ed, or the operator edited since.
            current = self._commit(f"undo: {step.label}", step.paths)
            if any(record["id"] == step.before and record["changed"] is None for record in history.checkpoints):
                _note_changes(history, step.before, self._changed_paths(step.before, current))
            files, skipped = self._restore_tree(current, step.before)
            history.redo.append(_Step(before=step.before, after=current, label=step.label, paths=step.paths))
            self._save(history)
            return RestoreResult("undo", step.before, files, skipped)

    def redo(self) -> RestoreResult:
        """Return to the state the last undo left; undoing the redo returns to the state just before it."""
        with self._locked():
            history = self._load()
            if not history.redo:
                raise CheckpointError("nothing to redo", hint="redo is only possible right after an undo")
            step = history.redo.pop()
            assert step.after is not None  # every redo step is pushed by undo with the state it left
            current = self._commit(f"redo: {step.label}", step.paths)
            files, skipped = self._restore_tree(current, step.after)
            history.undo.append(_Step(before=current, after=step.after, label=step.label, paths=step.paths))
            self._save(history)
            return RestoreResult("redo", step.after, files, skipped)

    def restore_file(self, path: str, checkpoint: str) -> RestoreResult:
        """Restore one file as it was at ``checkpoint`` (deleting it if it did not exist); undoable."""
        rel = self._relative(path)
        with self._locked():
            target = self._resolve(checkpoint)
            history = self._load()
            label = f"restore {rel} from {target[:12]}"
            before = self._commit(label, [rel])
            changed = self._restore_path(before, target, rel)
            after = self._commit(f"after: {label}", [rel])
            history.undo.append(_Step(before=before, after=after, label=label, paths=[rel]))
            history.redo.clear()
            history.checkpoints.append({"id": before, "label": label, "created": time.time(), "changed": None})
            _note_changes(history, before, self._changed_paths(before, after))
            self._save(history)
            return RestoreResult("restore_file", target, changed)

    def history(self) -> list[Checkpoint]:
        """Every checkpoint of this session, oldest first."""
        return [
            Checkpoint(
                id=record["id"],
                label=record["label"],
                created=record["created"],
                files_changed_after=tuple(record["changed"] or ()),
            )
            for record in self._load().checkpoints
        ]

    # ------------------------------------------------------------------ git plumbing

    def _environment(self) -> dict[str, str]:
        """Variables for every git call; they override any GIT_* the agent process inherited."""
        return {
            "GIT_DIR": str(self._git_dir),
            "GIT_WORK_TREE": str(self.workspace),
            "GIT_INDEX_FILE": str(self._git_dir / "index"),
            "GIT_OBJECT_DIRECTORY": str(self._git_dir / "objects"),
            "GIT_COMMON_DIR": str(self._git_dir),
            "GIT_ALTERNATE_OBJECT_DIRECTORIES": "",
            # The operator's own git configuration (hooks, fsmonitor, excludes, signing) must not apply.
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_CONFIG_PARAMETERS": "",
            # A bind-mounted workspace is often owned by another uid; the store is ours, so trust it.
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "safe.directory",
            "GIT_CONFIG_VALUE_0": "*",
            "GIT_AUTHOR_NAME": _IDENTITY["name"],
            "GIT_AUTHOR_EMAIL": _IDENTITY["email"],
            "GIT_COMMITTER_NAME": _IDENTITY["name"],
            "GIT_COMMITTER_EMAIL": _IDENTITY["email"],
        }

    def _command(self) -> Git:
        """GitPython bound to the shadow repository, which is created first if it does not exist yet."""
        if self._git is None:
            try:
                from git import Git
            except ImportError as err:  # GitPython refuses to import when it finds no git executable
                raise CheckpointError(
                    f"checkpoints need git, which cannot be run here: {err}",
                    hint="install git, or point GIT_PYTHON_GIT_EXECUTABLE at it",
                ) from err
            git = Git(self.workspace)
            git.update_environment(**self._environment())
            self._git = git
        if not self._repo_ready:
            self._repo_ready = True  # first: creating the repository runs git commands itself
            try:
                self._ensure_repo()
            except BaseException:
                self._repo_ready = False
                raise
        return self._git

    def _run(self, command: str, *args: str, **options: Any) -> Any:
        git = self._command()
        from git.exc import GitCommandError  # loaded by _command

        try:
            return getattr(git, command)(*args, **options)
        except GitCommandError as err:
            stderr = (err.stderr or "").strip().removeprefix("stderr:").strip(" '\n")
            raise CheckpointError(
                f"checkpoint store: git {command.replace('_', '-')} failed: {stderr or err.status}",
                hint=f"check that {self.shadow_dir} is writable and not corrupt; deleting it only loses undo history",
            ) from err

    def _raw(self, command: str, *args: str, **options: Any) -> bytes:
        out: bytes = self._run(command, *args, stdout_as_string=False, strip_newline_in_stdout=False, **options)
        return out

    def _ensure_repo(self) -> None:
        ready = self.shadow_dir / "ready"
        if ready.exists():
            return
        # An empty template: no sample hooks, no info/exclude of git's own.
        self._run("init", "--quiet", "--template=")
        for key, value in _SHADOW_CONFIG.items():
            self._run("config", key, value)
        ready.touch()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise every operation on this workspace's store, across processes."""
        with open(self.shadow_dir / "lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                # Holding the lock, any index.lock left is from a process killed mid-operation.
                with contextlib.suppress(FileNotFoundError):
                    (self._git_dir / "index.lock").unlink()
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _commit(self, label: str, force_paths: Sequence[str]) -> str:
        """Stage the whole work tree into the shadow index and commit it, even if nothing changed."""
        return self._commit_workspace(label, force_paths)[0]

    def _commit_workspace(self, label: str, force_paths: Sequence[str]) -> tuple[str, str]:
        """(commit, tree) of the whole work tree, staged as ``git add --all`` would plus ``force_paths``.

        ``ls-files`` lists the paths that differ from the index; only those (and ``force_paths``) are staged,
        by ``update-index``, which needs telling what ``add`` works out itself: a tracked path that is now
        a directory, an over-size file or behind a symlink leaves the index, and ``--replace`` lets a
        file take the place of a directory (or the reverse).
        """
        listing = self._raw(
            "ls_files", "-z", "--others", "--modified", "--exclude-standard", "--", ".", *_exclusions(self._excluded)
        )
        entries = _split_z(listing)
        # A nested repository: git would add it as a gitlink (or fail if it has no commit yet).
        nested = [rel.rstrip("/") for rel in entries if rel.endswith("/")]
        excluded = [*self._excluded, *nested]
        remove: list[str] = []
        stage: dict[str, None] = {}
        for rel in entries:
            if rel.endswith("/") or _is_within(rel, nested):
                continue
            if self._kind(rel) in ("directory", "large", "missing"):
                # Gone, now a directory, or grown past the limit: a stale version left in the index would
                # be restored by undo.
                remove.append(rel)
            else:
                stage[rel] = None
        for rel in force_paths:
            if not _is_within(rel, excluded) and self._kind(rel) == "file":
                stage[rel] = None
        self._stage(remove, list(stage))
        return self._write_commit(label)

    def _stage_named_paths(self, step: _Step) -> list[str] | None:
        """Stage the paths a change confined to ``step.paths`` changed, and list them; None if it takes a scan.

        Comparing what the paths hold with what this store's snapshot staged gives what a scan's
        ``diff-tree`` would, unless a path's change alters how other files stage (ignore or attribute
        rules, a nested repository, the state dir) or it is a directory or unreadable.
        """
        last = self._last
        if last is None or last.commit != step.before or not step.paths:
            return None
        changed: dict[str, tuple[object, ...]] = {}
        for rel in step.paths:
            was, now = last.fingerprints.get(rel), self._fingerprint(rel)
            if was is None or now is None or not self._changes_alone(rel):
                return None
            if was != now:
                changed[rel] = now
        # Staged now, as a scan would: an ignored file a tool created must stay tracked for later undos.
        self._stage(
            [rel for rel, now in changed.items() if now == ("absent",)],
            [rel for rel, now in changed.items() if now != ("absent",)],
        )
        return list(changed)

    def _changes_alone(self, rel: str) -> bool:
        """Whether a change of ``rel`` leaves how every other path stages as it was."""
        if rel.rpartition("/")[2] in (".gitignore", ".gitattributes") or _is_within(rel, self._excluded):
            return False
        parent = self.workspace
        for part in rel.split("/")[:-1]:
            parent = parent / part
            if os.path.lexists(parent / ".git"):
                return False
        return True

    def _kind(self, rel: str) -> Literal["file", "large", "directory", "missing", "other"]:
        """What ``rel`` is to the index; git counts a path behind a symlinked directory as missing."""
        parent = self.workspace
        for part in rel.split("/")[:-1]:
            parent = parent / part
            if parent.is_symlink():
                return "missing"
        try:
            info = (self.workspace / rel).lstat()
        except OSError:
            return "missing"
        if stat.S_ISDIR(info.st_mode):
            return "directory"
        if stat.S_ISREG(info.st_mode):
            return "large" if info.st_size > MAX_FILE_BYTES else "file"
        return "file" if stat.S_ISLNK(info.st_mode) else "other"

    def _fingerprint(self, rel: str) -> tuple[object, ...] | None:
        """What the snapshots would hold for ``rel``, by content (so a write within one clock tick shows).

        A missing or over-size file, or one behind a symlinked directory, is absent from snapshots; None
        means only a scan can tell (a directory, a special or unreadable file).
        """
        kind = self._kind(rel)
        if kind in ("missing", "large"):
            return ("absent",)
        if kind != "file":
            return None
        path = self.workspace / rel
        try:
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                return ("link", os.readlink(path))
            with open(path, "rb") as data:
                digest = hashlib.file_digest(data, "sha256").hexdigest()
        except OSError:
            return None
        # Git records a file as executable when its owner may execute it.
        return ("file", bool(info.st_mode & stat.S_IXUSR), digest)

    def _stage(self, remove: Sequence[str], stage: Sequence[str]) -> None:
        """Drop ``remove`` from the shadow index; add or update ``stage`` (or drop it if it is gone)."""
        # Paths go through stdin: a command that deleted a whole tree would overflow the argument list.
        for paths, options in ((remove, ["--force-remove"]), (stage, ["--add", "--remove", "--replace"])):
            if paths:
                with tempfile.TemporaryFile() as request:
                    request.write(b"".join(os.fsencode(rel) + b"\0" for rel in paths))
                    request.seek(0)
                    self._run("update_index", *options, "-z", "--stdin", istream=request)

    def _write_commit(self, label: str) -> tuple[str, str]:
        tree = self._write_tree()
        return self._commit_tree(tree, label), tree

    def _write_tree(self) -> str:
        """The shadow index as a tree; skips git when the index is byte-identical to the last one written."""
        checksum = self._index_checksum()
        if self._index_tree is not None and self._index_tree[0] == checksum and checksum:
            return self._index_tree[1]
        tree: str = self._run("write_tree").strip()
        # write-tree may rewrite the index to cache its trees, so read the checksum again.
        self._index_tree = (self._index_checksum(), tree)
        return tree

    def _commit_tree(self, tree: str, label: str) -> str:
        """A parentless commit of ``tree``, written as a loose object here rather than by ``git commit-tree``.

        A commit is a few header lines, so writing it saves a git process per checkpoint; the nonce keeps
        two checkpoints of one tree apart.
        """
        ident = f"{_IDENTITY['name']} <{_IDENTITY['email']}> {int(time.time())} +0000"
        message = (label or "checkpoint").replace("\0", " ").encode(errors="surrogateescape")
        body = (
            f"tree {tree}\nauthor {ident}\ncommitter {ident}\n\n".encode()
            + message
            + f"\n\nCheckpoint-Nonce: {secrets.token_hex(8)}\n".encode()
        )
        data = b"commit %d\0" % len(body) + body
        sha = hashlib.sha1(data, usedforsecurity=False).hexdigest()
        folder = self._git_dir / "objects" / sha[:2]
        temp = folder / f"tmp_obj_{secrets.token_hex(6)}"
        try:
            folder.mkdir(exist_ok=True)
            # Git's own modes for loose objects, and a rename so no reader sees half an object.
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
            with os.fdopen(fd, "wb") as out:
                out.write(zlib.compress(data))
            os.replace(temp, folder / sha[2:])
        except OSError as err:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise CheckpointError(
                f"cannot write a checkpoint into {self.shadow_dir}: {err.strerror}",
                hint="free disk space or make AGENT_STATE_DIR writable",
            ) from err
        return sha

    def _index_checksum(self) -> bytes:
        """The trailing SHA-1 git writes over the whole index file: equal checksums, equal index."""
        try:
            with open(self._git_dir / "index", "rb") as index:
                index.seek(-20, os.SEEK_END)
                return index.read()
        except OSError:
            return b""

    def _resolve(self, checkpoint: str) -> str:
        if _CHECKPOINT_ID.fullmatch(checkpoint):
            sha: str = self._run("rev_parse", "--verify", "-q", f"{checkpoint}^{{commit}}", with_exceptions=False)
            if sha.strip():
                return sha.strip()
        raise CheckpointError(
            f"unknown checkpoint {checkpoint!r}", hint="use a checkpoint id listed by the checkpoint history"
        )

    def _changed_paths(self, before: str, after: str) -> list[str]:
        return _split_z(self._raw("diff_tree", "-r", "-z", "--name-only", "--no-renames", before, after))

    def _tree_entry(self, commit: str, rel: str) -> tuple[str, str, str] | None:
        """(mode, type, sha) of ``rel`` in ``commit``; ``<rev>:<path>`` names paths literally."""
        parent, _, name = rel.rpartition("/")
        tree = f"{commit}:{parent}" if parent else f"{commit}^{{tree}}"
        raw = self._raw("ls_tree", "-z", tree, with_exceptions=False)
        for line in _split_z(raw):
            meta, _, entry_name = line.partition("\t")
            if entry_name == name:
                mode, kind, sha = meta.split()
                return mode, kind, sha
        return None

    # ------------------------------------------------------------------ restoring

    def _restore_tree(self, current: str, target: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Make the tracked files on disk match ``target``; ``current`` is a snapshot of them right now."""
        raw = self._raw("diff_tree", "-r", "-z", "--no-renames", current, target)
        changes = [
            change
            for change in _parse_raw_diff(raw)
            if _GITLINK not in (change.old_mode, change.new_mode) and not _names_dot_git(change.path)
        ]
        changed: list[str] = []
        skipped: list[str] = []
        index: list[tuple[str, str, str]] = []
        # Deletions first: a file may have to leave for a directory of the same name, and vice versa.
        for change in changes:
            if change.status != "D":
                continue
            path = self.workspace / change.path
            try:
                if stat.S_ISDIR(path.lstat().st_mode):
                    skipped.append(change.path)
                    continue
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError:
                skipped.append(change.path)
                continue
            else:
                changed.append(change.path)
                self._prune_empty_parents(path)
            index.append(("0", "0" * 40, change.path))
        writes: list[_Change] = []
        for change in changes:
            if change.status == "D":
                continue
            path = self.workspace / change.path
            # A path the current snapshot lacks but the disk has is ignored or over-size: not ours to replace.
            in_the_way = os.path.lexists(path) and (change.status == "A" or (path.is_dir() and not path.is_symlink()))
            if in_the_way or not self._make_parents(change.path):
                skipped.append(change.path)
            else:
                writes.append(change)

        def write(change: _Change, data: bytes) -> None:
            try:
                _write_file(self.workspace / change.path, data, change.new_mode)
            except OSError:
                skipped.append(change.path)
            else:
                changed.append(change.path)
                index.append((change.new_mode, change.new_sha, change.path))

        self._each_blob(writes, write)
        self._update_index(index)
        return tuple(sorted(changed)), tuple(sorted(skipped))

    def _restore_path(self, current: str, target: str, rel: str) -> tuple[str, ...]:
        """Make one path on disk match ``target``; refuse rather than overwrite what no snapshot holds."""
        wanted = self._tree_entry(target, rel)
        present = self._tree_entry(current, rel)
        path = self.workspace / rel
        if wanted is not None and wanted[1] != "blob":
            raise CheckpointError(
                f"{rel} is a directory or nested repository in checkpoint {target[:12]}, not a file",
                hint="restore the files inside it one by one",
            )
        if os.path.lexists(path) and present is None:
            raise CheckpointError(
                f"{rel} is not covered by the snapshots (a directory, a nested repository, or over "
                f"{MAX_FILE_BYTES // (1024 * 1024)} MB), so it is left as it is",
                hint="move it aside first if it should be replaced",
            )
        if wanted is None:
            if present is None:
                return ()
            try:
                path.unlink(missing_ok=True)
            except OSError as err:
                raise CheckpointError(f"cannot delete {rel}: {err.strerror}", hint="check its permissions") from err
            self._prune_empty_parents(path)
            self._update_index([("0", "0" * 40, rel)])
            return (rel,)
        mode, _, sha = wanted
        if present is not None and present[0] == mode and present[2] == sha:
            return ()
        if not self._make_parents(rel):
            raise CheckpointError(
                f"cannot restore {rel}: a parent of it is now a file or a link",
                hint="move that file aside, then restore again",
            )
        change = _Change(old_mode="", new_mode=mode, new_sha=sha, status="M", path=rel)
        try:
            self._each_blob([change], lambda c, data: _write_file(path, data, c.new_mode))
        except OSError as err:
            raise CheckpointError(f"cannot write {rel}: {err.strerror}", hint="check its permissions") from err
        self._update_index([(mode, sha, rel)])
        return (rel,)

    def _each_blob(self, changes: Sequence[_Change], consume: Callable[[_Change, bytes], None]) -> None:
        """Stream blob contents through one ``cat-file --batch`` process, one blob in memory at a time."""
        if not changes:
            return
        with tempfile.TemporaryFile() as request:
            request.write("".join(f"{change.new_sha}\n" for change in changes).encode())
            request.seek(0)
            process = self._run("cat_file", "--batch", istream=request, as_process=True)
            from git.exc import GitCommandError  # loaded by _run

            try:
                for change in changes:
                    header = process.stdout.readline().split()
                    if len(header) != 3 or header[1] != b"blob":
                        raise CheckpointError(
                            f"checkpoint store is missing the content of {change.path}",
                            hint=f"the store at {self.shadow_dir} is damaged; restore the file from elsewhere",
                        )
                    data = process.stdout.read(int(header[2]))
                    process.stdout.read(1)
                    consume(change, data)
            except BaseException:
                # Unread output would block git on a full pipe; the error raised here is the one to report.
                process.proc.kill()
                process.proc.wait()
                raise
            try:
                process.wait()
            except GitCommandError as err:
                raise CheckpointError(
                    f"checkpoint store: git cat-file failed: {err.stderr}",
                    hint=f"the store at {self.shadow_dir} may be damaged",
                ) from err

    def _update_index(self, entries: Sequence[tuple[str, str, str]]) -> None:
        """Set shadow index entries to what was restored, so a restored force-added file stays tracked."""
        if not entries:
            return
        with tempfile.TemporaryFile() as request:
            request.write(b"".join(f"{mode} {sha}\t".encode() + os.fsencode(rel) + b"\0" for mode, sha, rel in entries))
            request.seek(0)
            self._run("update_index", "-z", "--index-info", istream=request)

    def _make_parents(self, rel: str) -> bool:
        """Create the missing parent directories of ``rel``; False if one is a file or a symlink."""
        current = self.workspace
        for part in rel.split("/")[:-1]:
            current = current / part
            try:
                if not stat.S_ISDIR(current.lstat().st_mode):
                    return False
            except FileNotFoundError:
                try:
                    current.mkdir()
                except OSError:
                    return False
        return True

    def _prune_empty_parents(self, path: Path) -> None:
        parent = path.parent
        while parent != self.workspace:
            try:
                parent.rmdir()
            except OSError:
                return
            parent = parent.parent

    # ------------------------------------------------------------------ garbage collection

    def collect_garbage(self) -> None:
        """Forget deleted sessions' checkpoints and trim long histories, then let git drop what none lists."""
        with self._locked():
            self._collect_garbage()

    def _collect_garbage_if_due(self) -> None:
        stamp = self.shadow_dir / "gc-stamp"
        try:
            age = time.time() - stamp.stat().st_mtime
        except FileNotFoundError:
            # A new store has nothing to collect; the stamp starts its clock.
            stamp.touch()
            return
        if age > GC_INTERVAL_S:
            # Stamped first, so a collection that fails is not retried on every start.
            stamp.touch()
            self._collect_garbage()

    def _collect_garbage(self) -> None:
        kept: set[str] = set()
        for history_file in sorted(self._stacks_dir.glob("*.json")):
            session = history_file.stem
            deleted = self._sessions_dir.is_dir() and not (self._sessions_dir / session).exists()
            if deleted and session != self.session_id:
                history_file.unlink(missing_ok=True)
                continue
            # An unreadable history raises here, before anything is pruned: its checkpoints may be wanted.
            history = self._load(history_file)
            if _trim(history):
                self._save(history, history_file)
            kept.update(_commits_of(history))
        self._keep_refs(kept)
        self._run("pack_refs", "--all")
        self._run("prune")
        # A tree remembered from before may be one prune just deleted.
        self._index_tree = None
        self._run(
            "gc",
            "--auto",
            "--quiet",
            # The store's own config turns automatic gc off; here it packs loose objects, in the foreground.
            env={
                "GIT_CONFIG_COUNT": "3",
                "GIT_CONFIG_KEY_1": "gc.auto",
                "GIT_CONFIG_VALUE_1": str(GC_LOOSE_OBJECTS),
                "GIT_CONFIG_KEY_2": "gc.autoDetach",
                "GIT_CONFIG_VALUE_2": "false",
            },
        )

    def _keep_refs(self, commits: set[str]) -> None:
        """Point one ref at each commit to keep (those still in the store) and delete every other ref."""
        with tempfile.TemporaryFile() as request:
            request.write("".join(f"{sha}\n" for sha in sorted(commits)).encode())
            request.seek(0)
            found = self._run("cat_file", "--batch-check=%(objectname) %(objecttype)", istream=request)
        wanted = {
            f"refs/dev-agent/keep/{sha}": sha
            for sha, _, kind in (line.partition(" ") for line in found.splitlines())
            if kind == "commit"
        }
        # Older versions kept one ref per session, on a chain of every checkpoint it took: those go too.
        existing = set(self._run("for_each_ref", "--format=%(refname)", "refs/dev-agent/").split())
        commands = [f"delete {ref}\n" for ref in sorted(existing - wanted.keys())]
        commands += [f"update {ref} {sha}\n" for ref, sha in wanted.items() if ref not in existing]
        if commands:
            with tempfile.TemporaryFile() as request:
                request.write("".join(commands).encode())
                request.seek(0)
                self._run("update_ref", "--stdin", istream=request)

    # ------------------------------------------------------------------ persistence

    def _relative(self, path: str) -> str:
        """A workspace-relative POSIX path, or CheckpointError for anything outside it."""
        candidate = Path(path)
        if candidate.is_absolute():
            try:
                candidate = candidate.relative_to(self.workspace)
            except ValueError:
                raise CheckpointError(
                    f"{path} is outside the workspace {self.workspace}", hint="give a path inside the workspace"
                ) from None
        rel = candidate.as_posix()
        if "\0" in path or not candidate.parts or ".." in candidate.parts or _names_dot_git(rel):
            raise CheckpointError(
                f"{path!r} is not a file path inside the workspace",
                hint="give a workspace-relative path without '..' and outside .git",
            )
        return rel

    def _load(self, history_file: Path | None = None) -> _History:
        history_file = history_file or self._history_file
        try:
            data = json.loads(history_file.read_text(encoding="utf-8"))
            return _History(
                undo=[_Step(**step) for step in data["undo"]],
                redo=[_Step(**step) for step in data["redo"]],
                checkpoints=list(data["checkpoints"]),
            )
        except FileNotFoundError:
            return _History()
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise CheckpointError(
                f"undo history {history_file} is unreadable: {err}",
                hint=f"move {history_file} aside to start a fresh undo history for this session",
            ) from err

    def _save(self, history: _History, history_file: Path | None = None) -> None:
        history_file = history_file or self._history_file
        _trim(history)
        # Surrogate-escaped (non-UTF-8) file names survive as \udcXX escapes with ensure_ascii.
        # vars() rather than dataclasses.asdict, whose deep copy of every step cost milliseconds per save.
        payload = json.dumps(
            {
                "version": 1,
                "undo": [vars(step) for step in history.undo],
                "redo": [vars(step) for step in history.redo],
                "checkpoints": history.checkpoints,
            },
            ensure_ascii=True,
        )
        temp = history_file.with_name(f".{history_file.name}.{secrets.token_hex(4)}")
        try:
            with open(temp, "w", encoding="utf-8") as out:
                out.write(payload)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, history_file)
        except OSError as err:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise CheckpointError(
                f"cannot save undo history {history_file}: {err.strerror}",
                hint="free disk space or make AGENT_STATE_DIR writable",
            ) from err


def _note_changes(history: _History, before: str, changed: list[str]) -> None:
    for record in history.checkpoints:
        if record["id"] == before:
            record["changed"] = changed


def _trim(history: _History) -> bool:
    """Keep the newest ``KEEP_CHECKPOINTS`` steps and checkpoints; True if any were dropped."""
    dropped = False
    for items in (history.undo, history.redo, history.checkpoints):
        if len(items) > KEEP_CHECKPOINTS:
            del items[:-KEEP_CHECKPOINTS]
            dropped = True
    return dropped


def _commits_of(history: _History) -> set[str]:
    steps = [*history.undo, *history.redo]
    commits = {step.before for step in steps} | {step.after for step in steps if step.after}
    return commits | {record["id"] for record in history.checkpoints}


def _split_z(raw: bytes) -> list[str]:
    """NUL-separated git output as str paths; undecodable bytes round-trip via surrogateescape."""
    return [os.fsdecode(item) for item in raw.split(b"\0") if item]


def _parse_raw_diff(raw: bytes) -> list[_Change]:
    """Parse ``diff-tree -z --raw``: ``:old new oldsha newsha status\\0path\\0`` per change."""
    items = raw.split(b"\0")
    changes: list[_Change] = []
    for meta, path in zip(items[0::2], items[1::2], strict=False):
        if not meta.startswith(b":"):
            continue
        old_mode, new_mode, _, new_sha, status = meta[1:].decode().split()
        changes.append(_Change(old_mode, new_mode, new_sha, status[0], os.fsdecode(path)))
    return changes


def _exclusions(paths: Sequence[str]) -> list[str]:
    return [f":(exclude,literal){path}" for path in paths]


def _is_within(rel: str, directories: Sequence[str]) -> bool:
    return any(rel == d or rel.startswith(f"{d}/") for d in directories)


def _names_dot_git(rel: str) -> bool:
    return any(part.lower() == ".git" for part in rel.split("/"))


def _write_file(path: Path, data: bytes, mode: str) -> None:
    """Replace ``path`` atomically with ``data``; a symlink on disk is replaced, never written through."""
    temp = path.with_name(f".dev-agent-restore-{secrets.token_hex(6)}")
    if mode == _SYMLINK:
        os.symlink(os.fsdecode(data), temp)
        os.replace(temp, path)
        return
    executable = mode == _EXECUTABLE
    try:
        info = path.lstat()
        keep = stat.S_IMODE(info.st_mode) if stat.S_ISREG(info.st_mode) else None
    except FileNotFoundError:
        keep = None
    # New files get git's modes through the umask; existing ones keep theirs apart from the x bits.
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o777 if executable else 0o666)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            if keep is not None:
                os.fchmod(out.fileno(), (keep | (keep & 0o444) >> 2) if executable else keep & ~0o111)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
