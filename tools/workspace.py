"""Workspace confinement: the one place a model-supplied path becomes a real path, and where files are written.

Every tool turns the model's path into a real path with `Workspace.resolve`, which walks the path
component by component the way the kernel does (following each symlink, `..` after the link) and
refuses anything whose real location is outside the root, anything that passes through `/proc`
(`/proc/self/root`, `/proc/<pid>/cwd`, `/dev/fd/N` all lead there; their targets cannot be
trusted), and paths hidden or read-only by paths.yaml.

Reads and writes then re-open the checked path from a descriptor of the root, one directory at a
time with O_NOFOLLOW, so a symlink swapped in after the check is refused instead of followed, and
the final rename happens in a directory reached without following any link.

Hard links cannot be told from ordinary files by path: one placed in the workspace reads the
content it shares, but a write replaces it with a new file, so the other name keeps its content.

What remains open: a hostile process running inside the workspace at the same time could rename a
whole directory on the path to somewhere outside the root between the check and the rename (the
pinned directory descriptor would follow the moved directory). Closing that needs openat2 with
RESOLVE_BENEATH, which Python's standard library does not expose.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat
from pathlib import Path
from typing import BinaryIO

from core.errors import WorkspaceError
from core.policy_types import PathRules

# The kernel gives up after 40 symlinks (MAXSYMLINKS); so do we.
MAX_SYMLINK_HOPS = 40
POLICY_FILE = "paths.yaml"

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


class Workspace:
    """The project tree the agent may use, with the path rules of paths.yaml."""

    def __init__(self, root: Path, rules: PathRules | None = None) -> None:
        real = os.path.realpath(root)
        if not os.path.isdir(real):
            raise WorkspaceError(f"workspace root {root} is not an existing directory",
                                 hint="set AGENT_WORKSPACE or --workspace to an existing directory")
        self.root = Path(real)
        self.rules = rules or PathRules()
        self._root = real
        # The model may quote the root as it was configured (e.g. /workspace even when that is a symlink).
        self._root_spellings = tuple(dict.fromkeys((real, os.path.abspath(root))))

    def resolve(self, path: str, *, write: bool = False) -> Path:
        """The real path inside the workspace that `path` names, or WorkspaceError saying why not."""
        path = _undo_byte_escapes(path, self._root)
        lexical = self._lexical(path)
        normal = os.path.normpath(lexical) if lexical else "."
        if normal == ".." or normal.startswith("../"):
            raise self._outside(path)
        self._check_rules(path, lexical, write)
        self._check_rules(path, normal, write)
        real = self._walk(path, lexical)
        if os.path.commonpath([self._root, real]) != self._root:
            raise WorkspaceError(
                f"path '{path}' leads outside the workspace through a symlink; use a path whose real "
                f"location is inside the workspace root ({self._root})")
        real_rel = self.relative(Path(real))
        if real_rel != normal:
            self._check_rules(path, real_rel, write, via=real_rel)
        if write and os.path.isdir(real):
            example = "new_file.txt" if real_rel == "." else f"{real_rel}/new_file.txt"
            raise WorkspaceError(f"path '{path}' is a directory; writing needs a file path such as '{example}'")
        return Path(real)

    def relative(self, real: Path) -> str:
        """POSIX path of `real` relative to the root ('.' for the root itself)."""
        rel = os.path.relpath(str(real), self._root)
        return rel.replace(os.sep, "/")

    def write_text(self, path: str, content: str) -> Path:
        """Atomically write `content` (UTF-8) to the workspace path `path`, creating missing directories.

        The path is resolved again here and its directory is reached from the root without following
        any symlink, so a link swapped in since `resolve` cannot redirect the write.
        """
        real = self.resolve(path, write=True)
        dir_fd = self._open_dir(real.parent, create=True, shown=path, verb="write")
        try:
            _replace_in_dir(dir_fd, real.name, content.encode("utf-8"))
        except IsADirectoryError:
            raise WorkspaceError(f"path '{path}' is a directory; writing needs a file path") from None
        except OSError as exc:
            raise WorkspaceError(f"cannot write '{path}': {exc.strerror}") from exc
        finally:
            os.close(dir_fd)
        return real

    def open_binary(self, real: Path) -> BinaryIO:
        """Open a resolved regular file for reading, refusing a symlink or special file swapped in since."""
        rel = self.relative(real)
        dir_fd = self._open_dir(real.parent, create=False, shown=rel, verb="read")
        try:
            # O_NONBLOCK so that a FIFO cannot hang the agent before fstat tells us what it is.
            fd = os.open(real.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
        except OSError as exc:
            raise WorkspaceError(f"cannot read '{rel}': {exc.strerror}") from exc
        finally:
            os.close(dir_fd)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise WorkspaceError(f"'{rel}' is not a regular file (a device, socket or pipe); it cannot be read")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")

    def _lexical(self, path: str) -> str:
        """The path relative to the root as written: empty and '.' segments dropped, '..' kept."""
        if not isinstance(path, str):
            raise WorkspaceError(f"path must be a string, not {type(path).__name__}")
        if "\x00" in path:
            raise WorkspaceError("path contains a NUL byte; use a plain path relative to the workspace root, "
                                 "such as 'src/app.py'")
        if not path.strip():
            raise WorkspaceError(f"path is empty; use a path relative to the workspace root ({self._root}), "
                                 "or '.' for the root itself")
        rest = path
        if path.startswith("/"):
            squeezed = "/" + "/".join(part for part in path.split("/") if part)
            for spelling in self._root_spellings:
                if _under(squeezed, spelling):
                    rest = squeezed[len(spelling.rstrip("/")):]
                    break
            else:
                raise self._outside(path)
        return "/".join(part for part in rest.split("/") if part not in ("", "."))

    def _walk(self, shown: str, lexical: str) -> str:
        """Resolve like the kernel: each symlink replaced by its target, '..' taken after the link.

        Components that do not exist (yet) are kept as written, so a new file's path resolves too.
        """
        pending = lexical.split("/")[::-1] if lexical else []
        resolved = self._root
        hops = 0
        while pending:
            name = pending.pop()
            if name in ("", "."):
                continue
            if name == "..":
                resolved = os.path.dirname(resolved)
                continue
            candidate = os.path.join(resolved, name)
            if _under(candidate, "/proc"):
                raise WorkspaceError(
                    f"path '{shown}' goes through /proc (like /proc/self/root or /dev/fd), which is never "
                    f"allowed; use a path inside the workspace root ({self._root})")
            try:
                if not stat.S_ISLNK(os.lstat(candidate).st_mode):
                    resolved = candidate
                    continue
                target = os.readlink(candidate)
            except (FileNotFoundError, NotADirectoryError):
                resolved = candidate
                continue
            except OSError as exc:
                raise WorkspaceError(f"path '{shown}' cannot be used: {exc.strerror}") from exc
            hops += 1
            if hops > MAX_SYMLINK_HOPS:
                raise WorkspaceError(
                    f"path '{shown}' cannot be resolved: it goes through a symlink loop; use a path that "
                    "does not go through that symlink")
            if target.startswith("/"):
                resolved = "/"
            pending.extend(target.split("/")[::-1])
        return resolved

    def _check_rules(self, shown: str, rel: str, write: bool, via: str = "") -> None:
        if rel in ("", "."):
            return
        leads = f" leads to '{via}', which" if via else ""
        if self.rules.is_hidden(rel):
            raise WorkspaceError(f"path '{shown}'{leads} is hidden by the workspace policy ({POLICY_FILE}); "
                                 "it cannot be read or written")
        if write and self.rules.is_read_only(rel):
            raise WorkspaceError(f"path '{shown}'{leads} is read-only by the workspace policy ({POLICY_FILE}); "
                                 "it can be read but not written")

    def _outside(self, shown: str) -> WorkspaceError:
        return WorkspaceError(f"path '{shown}' is outside the workspace; use a path relative to the "
                              f"workspace root ({self._root})")

    def _open_dir(self, real_dir: Path, *, create: bool, shown: str, verb: str) -> int:
        """A descriptor of `real_dir`, reached from the root one directory at a time without following links."""
        rel = self.relative(real_dir)
        fd = os.open(self._root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        reached = ""
        try:
            for name in [] if rel == "." else rel.split("/"):
                reached = f"{reached}/{name}" if reached else name
                if create:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(name, dir_fd=fd)
                next_fd = os.open(name, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = next_fd
        except OSError as exc:
            os.close(fd)
            raise WorkspaceError(f"cannot {verb} '{shown}': '{reached}' is not a directory inside the workspace "
                                 f"({exc.strerror}); check the path with list_dir") from exc
        return fd


def atomic_write(path: Path, data: str | bytes) -> None:
    """Replace `path` in one step: temp file beside it, fsync, rename, fsync the directory; keeps the mode.

    `path` must already be a trusted real path; model-supplied paths go through `Workspace.write_text`.
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _replace_in_dir(dir_fd, path.name, payload)
    finally:
        os.close(dir_fd)


def _replace_in_dir(dir_fd: int, name: str, payload: bytes) -> None:
    """Write `payload` to a temp file in the directory `dir_fd` and rename it over `name`."""
    try:
        current = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        current = None
    if current is not None and stat.S_ISDIR(current.st_mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), name)
    keep = current if current is not None and stat.S_ISREG(current.st_mode) else None
    temp_name = f".{name[:180]}.{secrets.token_hex(6)}.tmp"
    # New files get 0o644 less the umask; an existing file's exact mode is restored with fchmod below.
    fd = os.open(temp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600 if keep is not None else 0o644, dir_fd=dir_fd)
    try:
        try:
            if keep is not None:
                if (keep.st_uid, keep.st_gid) != (os.geteuid(), os.getegid()):
                    # Only root may give a file to another owner; anyone else's save leaves it theirs, as editors do.
                    with contextlib.suppress(OSError):
                        os.fchown(fd, keep.st_uid, keep.st_gid)
                os.fchmod(fd, stat.S_IMODE(keep.st_mode))
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp_name, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name, dir_fd=dir_fd)
        raise
    os.fsync(dir_fd)


_BYTE_ESCAPE = re.compile(r"\\x([89a-fA-F][0-9a-fA-F])")


def _undo_byte_escapes(path: str, root: str) -> str:
    """A non-UTF-8 name is shown to the model as `caf\\xe9.txt` (the model cannot send raw bytes): map it back.

    Only when the escaped form does not exist itself and the decoded one does, so a file really named with
    a backslash keeps working.
    """
    if "\\x" not in path:
        return path
    decoded = _BYTE_ESCAPE.sub(lambda m: chr(0xDC00 + int(m.group(1), 16)), path)
    full = os.path.join(root, path)
    if decoded != path and not os.path.lexists(full) and os.path.lexists(os.path.join(root, decoded)):
        return decoded
    return path
