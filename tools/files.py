"""The file tools the model calls: read, list, search, and planned writes and edits shown as diffs before they apply.

Every function takes the `Workspace` first, returns text the model reads, and raises WorkspaceError
(sent to the model verbatim) when it refuses. Writes are planned (`plan_write`, `plan_edit`) into a
`FileChange` whose diff is shown for approval, then applied with `apply_change`.
"""

from __future__ import annotations

import difflib
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from core.errors import WorkspaceError
from core.policy_types import glob_match
from tools.workspace import Workspace

READ_MAX_LINES = 2000
READ_MAX_BYTES = 200_000
# Binary files are recognised by a NUL byte in their first 8 KB (as git does) or invalid UTF-8.
SNIFF_BYTES = 8192
EDIT_MAX_BYTES = 10_000_000
LIST_MAX_ENTRIES = 500
SEARCH_MAX_FILE_BYTES = 2_000_000
SEARCH_MAX_MATCHES = 200
SEARCH_LINE_CHARS = 300
DIFF_CONTEXT_LINES = 3
# How similar the nearest text must be (difflib ratio) before it is offered as "closest lines".
CLOSE_MATCH_RATIO = 0.5


@dataclass(frozen=True)
class FileChange:
    """A write or edit computed but not yet applied: what the approval screen shows as `diff`."""

    path: str
    old: str | None
    new: str
    diff: str
    created: bool


def split_lines(text: str) -> list[str]:
    """Lines with their endings, split on '\\n' only (str.splitlines also splits on form feeds and the like)."""
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def read_file(ws: Workspace, path: str, start_line: int | None = None, end_line: int | None = None) -> str:
    """A header line, then the raw text of lines start_line..end_line (1-based, inclusive), capped per call."""
    real = ws.resolve(path)
    rel = ws.relative(real)
    _require_file(real, rel, "read_file", missing_hint="call list_dir or search_files to find the right path")
    if start_line is not None and start_line < 1:
        raise WorkspaceError(f"read_file: start_line is 1-based; use start_line=1 for the first line of '{rel}'")
    if end_line is not None and end_line < 1:
        raise WorkspaceError(f"read_file: end_line is 1-based; use end_line=1 or more, or leave it out to read "
                             f"to the end of '{rel}'")
    if start_line is not None and end_line is not None and end_line < start_line:
        raise WorkspaceError(f"read_file: end_line ({end_line}) is before start_line ({start_line}); give a "
                             "range with start_line <= end_line")
    first = start_line or 1
    shown: list[str] = []
    shown_bytes = 0
    truncated = False
    cut_line: tuple[int, int] | None = None  # (line number, its size) when one line alone was too long
    total = 0
    with ws.open_binary(real) as handle:
        size = os.fstat(handle.fileno()).st_size
        if b"\0" in handle.read(SNIFF_BYTES):
            raise _binary(rel, size, "read_file", "shown as text")
        handle.seek(0)
        for total, raw in enumerate(handle, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise _binary(rel, size, "read_file", "shown as text") from None
            if total < first or (end_line is not None and total > end_line) or truncated:
                continue
            if len(shown) >= READ_MAX_LINES or shown_bytes + len(raw) > READ_MAX_BYTES:
                if not shown:
                    shown.append(raw[:READ_MAX_BYTES].decode("utf-8", errors="ignore"))
                    cut_line = (total, len(raw))
                truncated = True
                continue
            shown.append(line)
            shown_bytes += len(raw)
    if total == 0:
        return f"{rel} (empty file, 0 lines)"
    if first > total:
        raise WorkspaceError(f"read_file: '{rel}' has {total} lines; start_line={first} is past the end, "
                             f"use a start_line from 1 to {total}")
    last = first + len(shown) - 1
    text = "".join(shown)
    note = ""
    if cut_line is not None:
        number, length = cut_line
        note = (f"[truncated: line {number} is {length:,} bytes long; showed its first {READ_MAX_BYTES:,} bytes; "
                "use search_files to find text inside it")
        end = min(end_line or total, total)
        note += f", or call read_file with start_line={number + 1} to read on]" if number < end else "]"
    elif truncated:
        note = (f"[truncated: showed lines {first}-{last} of {total}; "
                f"call read_file with start_line={last + 1} to read on]")
    header = f"{rel} (lines {first}-{last} of {total})"
    if note and not text.endswith("\n"):
        text += "\n"
    return f"{header}\n{text}{note}"


def list_dir(ws: Workspace, path: str = ".") -> str:
    """One directory level, sorted by name: directories end in '/', files show their size."""
    real = ws.resolve(path)
    rel = ws.relative(real)
    if not real.exists():
        parent = os.path.dirname(rel) or "."
        raise WorkspaceError(f"list_dir: '{rel}' does not exist; call list_dir with path='{parent}' to see "
                             "what is there")
    if not real.is_dir():
        raise WorkspaceError(f"list_dir: '{rel}' is a file ({real.stat().st_size:,} bytes); call read_file "
                             "to read it")
    with os.scandir(real) as scan:
        entries = sorted(scan, key=lambda entry: entry.name)
    lines: list[str] = []
    hidden = 0
    counts = {"dirs": 0, "files": 0}
    for entry in entries:
        entry_rel = entry.name if rel == "." else f"{rel}/{entry.name}"
        if ws.rules.is_hidden(entry_rel):
            hidden += 1
            continue
        lines.append(_describe_entry(ws, entry, entry_rel, counts))
    shown = lines[:LIST_MAX_ENTRIES]
    summary = f"{_count(counts['dirs'], 'directory', 'directories')}, {_count(counts['files'], 'file', 'files')}"
    header = f"{rel}/ ({summary})" if lines else f"{rel}/ is empty"
    out = [header, *shown]
    if len(lines) > LIST_MAX_ENTRIES:
        out.append(f"[showing {LIST_MAX_ENTRIES} of {len(lines)} entries; call list_dir on a subdirectory or "
                   "use search_files with a glob]")
    if hidden:
        out.append(f"[{_count(hidden, 'entry', 'entries')} hidden by the workspace policy "
                   "(paths.yaml) not shown]")
    return "\n".join(out)


def _count(number: int, one: str, many: str) -> str:
    return f"{number} {one if number == 1 else many}"


def _describe_entry(ws: Workspace, entry: os.DirEntry[str], entry_rel: str, counts: dict[str, int]) -> str:
    read_only = " (read-only)" if ws.rules.is_read_only(entry_rel) else ""
    if entry.is_symlink():
        try:
            target = ws.resolve(entry_rel)
        except WorkspaceError:
            return f"{entry.name} (symlink that cannot be used: it leads outside the workspace or to a hidden path)"
        target_rel = ws.relative(target)
        if target.is_dir():
            counts["dirs"] += 1
            return f"{entry.name}/ -> {target_rel}/{read_only}"
        if target.is_file():
            counts["files"] += 1
            return f"{entry.name} -> {target_rel} ({target.stat().st_size:,} bytes){read_only}"
        return f"{entry.name} -> {target_rel} (missing)"
    info = entry.stat(follow_symlinks=False)
    if stat.S_ISDIR(info.st_mode):
        counts["dirs"] += 1
        return f"{entry.name}/{read_only}"
    if stat.S_ISREG(info.st_mode):
        counts["files"] += 1
        return f"{entry.name} ({info.st_size:,} bytes){read_only}"
    return f"{entry.name} (special file: not readable as text)"


def search_files(ws: Workspace, pattern: str, path: str = ".", glob: str | None = None) -> str:
    """Lines matching a Python regex, as `path:line: text`, under `path` (a directory or one file).

    `glob` filters on the path relative to the workspace root with the policy glob rules
    (core.policy_types.glob_match): a glob without '/' such as '*.py' matches any path component,
    one with '/' such as 'src/**/*.py' matches the whole relative path. Hidden paths, `.git`,
    symlinks, binary files and files over 2 MB are skipped.
    """
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise WorkspaceError(f"search_files: invalid regular expression '{pattern}': {exc}; fix it (escape "
                             "special characters such as ( [ . * + ? with a backslash) and search again") from None
    real = ws.resolve(path)
    rel = ws.relative(real)
    if not real.exists():
        raise WorkspaceError(f"search_files: '{rel}' does not exist; call list_dir to find the right path")
    matches: list[str] = []
    for file_real, file_rel in _searchable_files(ws, real, rel, glob):
        for number, line in _text_lines(file_real):
            if regex.search(line):
                text = line if len(line) <= SEARCH_LINE_CHARS else line[:SEARCH_LINE_CHARS] + " [line cut]"
                matches.append(f"{file_rel}:{number}: {text}")
                if len(matches) >= SEARCH_MAX_MATCHES:
                    matches.append(f"[{SEARCH_MAX_MATCHES} matches shown; narrow the pattern or the path]")
                    return "\n".join(matches)
    if not matches:
        where = f" (files matching glob '{glob}')" if glob else ""
        return f"no matches for pattern '{pattern}' in '{rel}'{where}"
    return "\n".join(matches)


def _searchable_files(ws: Workspace, real: Path, rel: str, glob: str | None) -> Iterator[tuple[Path, str]]:
    def wanted(file_rel: str) -> bool:
        return not ws.rules.is_hidden(file_rel) and (glob is None or glob_match(glob, file_rel))

    if not real.is_dir():
        if wanted(rel):
            yield real, rel
        return
    for dirpath, dirnames, filenames in os.walk(real):
        dir_rel = ws.relative(Path(dirpath))
        prefix = "" if dir_rel == "." else dir_rel + "/"
        dirnames[:] = sorted(name for name in dirnames
                             if name != ".git" and not ws.rules.is_hidden(prefix + name)
                             and not os.path.islink(os.path.join(dirpath, name)))
        for name in sorted(filenames):
            file_path = Path(dirpath, name)
            if file_path.is_symlink() or not wanted(prefix + name):
                continue
            yield file_path, prefix + name


def _text_lines(real: Path) -> Iterator[tuple[int, str]]:
    """Numbered lines of a text file; nothing for binary, unreadable, special or oversized files."""
    try:
        info = real.lstat()
        if not stat.S_ISREG(info.st_mode) or info.st_size > SEARCH_MAX_FILE_BYTES:
            return
        data = real.read_bytes()
    except OSError:
        return
    if b"\0" in data[:SNIFF_BYTES]:
        return
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return
    for number, line in enumerate(split_lines(text), 1):
        yield number, line.rstrip("\r\n")


def plan_write(ws: Workspace, path: str, content: str) -> FileChange:
    """The change that writing `content` to `path` would make; nothing is written.

    When the existing file uses CRLF line endings and `content` has none, the content gets CRLF too,
    so rewriting a Windows file does not turn every line into a change.
    """
    real = ws.resolve(path, write=True)
    rel = ws.relative(real)
    if not real.exists():
        _require_creatable(ws, real, rel)
    old = _current_text(ws, real, rel, "write_file") if real.exists() else None
    if old is not None and _uses_crlf(old) and "\r" not in content:
        content = content.replace("\n", "\r\n")
    if old == content:
        raise WorkspaceError(f"write_file: '{rel}' already has exactly this content; nothing to write")
    return FileChange(path=rel, old=old, new=content, diff=unified_diff(rel, old, content), created=old is None)


def plan_edit(ws: Workspace, path: str, old_text: str, new_text: str, replace_all: bool = False) -> FileChange:
    """The change that replacing `old_text` with `new_text` in `path` would make; nothing is written."""
    real = ws.resolve(path, write=True)
    rel = ws.relative(real)
    if real.is_dir():
        raise WorkspaceError(f"edit_file: '{rel}' is a directory; give the path of a file inside it")
    if not real.exists():
        raise WorkspaceError(f"edit_file: '{rel}' does not exist; use write_file to create it")
    if not old_text:
        raise WorkspaceError("edit_file: old_text is empty; copy the exact text to replace from read_file, "
                             "or use write_file to write the whole file")
    if old_text == new_text:
        raise WorkspaceError("edit_file: old_text and new_text are identical; nothing would change")
    content = _current_text(ws, real, rel, "edit_file")
    if "\r\n" not in old_text and _uses_crlf(content):
        # The model saw the lines without their \r; match and write in the file's own line endings.
        old_text, new_text = old_text.replace("\n", "\r\n"), new_text.replace("\r\n", "\n").replace("\n", "\r\n")
    elif "\r\n" in old_text and "\r\n" not in content:
        old_text, new_text = old_text.replace("\r\n", "\n"), new_text.replace("\r\n", "\n")
    count = content.count(old_text)
    if count == 0:
        raise WorkspaceError(_not_found_message(rel, content, old_text))
    if count > 1 and not replace_all:
        starts = [m.start() for m in re.finditer(re.escape(old_text), content)]
        lines = ", ".join(str(content.count("\n", 0, start) + 1) for start in starts)
        raise WorkspaceError(f"edit_file: old_text occurs {count} times in '{rel}' (at lines {lines}); add "
                             "surrounding lines to old_text so it matches exactly one place, or set "
                             "replace_all=true to replace every occurrence")
    new = content.replace(old_text, new_text) if replace_all else content.replace(old_text, new_text, 1)
    return FileChange(path=rel, old=content, new=new, diff=unified_diff(rel, content, new), created=False)


def apply_change(ws: Workspace, change: FileChange) -> str:
    """Write a planned change atomically, unless the file changed since the change was planned."""
    real = ws.resolve(change.path, write=True)
    current = _current_text(ws, real, change.path, "write_file") if real.exists() else None
    if current != change.old:
        raise WorkspaceError(f"'{change.path}' changed since this edit was prepared; read it again and redo the edit")
    ws.write_text(change.path, change.new)
    new_lines = len(split_lines(change.new))
    if change.created:
        return f"created {change.path} ({_count(new_lines, 'line', 'lines')})"
    added, removed = _diff_counts(change.diff)
    return f"wrote {change.path} (+{added} -{removed} lines)"


def unified_diff(rel: str, old: str | None, new: str) -> str:
    """A git-style unified diff (a/ b/ headers, /dev/null for a new file, 3 lines of context)."""
    lines = difflib.unified_diff(
        split_lines(old or ""), split_lines(new),
        fromfile="/dev/null" if old is None else f"a/{rel}", tofile=f"b/{rel}", n=DIFF_CONTEXT_LINES)
    out = []
    for line in lines:
        out.append(line)
        if not line.endswith("\n"):
            out.append("\n\\ No newline at end of file\n")
    return "".join(out)


def _diff_counts(diff: str) -> tuple[int, int]:
    added = removed = 0
    for line in diff.split("\n"):
        if line.startswith("+") and not line.startswith("+++ "):
            added += 1
        elif line.startswith("-") and not line.startswith("--- "):
            removed += 1
    return added, removed


def _require_file(real: Path, rel: str, tool: str, *, missing_hint: str) -> None:
    if real.is_dir():
        raise WorkspaceError(f"{tool}: '{rel}' is a directory; call list_dir with path='{rel}' to see what it "
                             "contains")
    if not real.exists():
        raise WorkspaceError(f"{tool}: '{rel}' does not exist; {missing_hint}")


def _require_creatable(ws: Workspace, real: Path, rel: str) -> None:
    """Refuse now, before approval, a new file whose nearest existing ancestor is not a directory."""
    ancestor = real.parent
    while not ancestor.exists() and ancestor != ws.root:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise WorkspaceError(f"write_file: cannot create '{rel}': '{ws.relative(ancestor)}' is a file, not a "
                             "directory; choose another path")


def _binary(rel: str, size: int, tool: str, cannot: str) -> WorkspaceError:
    return WorkspaceError(f"{tool}: '{rel}' is a binary file ({size:,} bytes); it cannot be {cannot}")


def _current_text(ws: Workspace, real: Path, rel: str, tool: str) -> str:
    """The whole file as text, refusing binary and very large files (they cannot be shown as a diff)."""
    with ws.open_binary(real) as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > EDIT_MAX_BYTES:
            raise WorkspaceError(f"{tool}: '{rel}' is {size:,} bytes, too large to change through a diff "
                                 f"(limit {EDIT_MAX_BYTES:,}); use run_command with a tool suited to it")
        data = handle.read()
    if b"\0" in data[:SNIFF_BYTES]:
        raise _binary(rel, len(data), tool, "edited as text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise _binary(rel, len(data), tool, "edited as text") from None


def _uses_crlf(text: str) -> bool:
    newlines = text.count("\n")
    return newlines > 0 and text.count("\r\n") == newlines


def _squash(line: str) -> str:
    return " ".join(line.split())


def _not_found_message(rel: str, content: str, old_text: str) -> str:
    """Why old_text did not match, with the nearest text of the file (numbered) so the model can retry."""
    file_lines = [line.rstrip("\r\n") for line in split_lines(content)]
    wanted = [line.rstrip("\r") for line in old_text.split("\n")]
    while len(wanted) > 1 and not wanted[-1].strip():
        wanted.pop()
    size = len(wanted)
    parts = [f"edit_file: old_text was not found in '{rel}'."]
    squashed_file = [_squash(line) for line in file_lines]
    squashed_wanted = [_squash(line) for line in wanted]
    start = next((i for i in range(len(file_lines) - size + 1)
                  if squashed_file[i:i + size] == squashed_wanted), None)
    if start is not None:
        parts.append(f"The same text with different whitespace or indentation is at lines {start + 1}-{start + size} "
                     "(line numbers added, not part of the file):")
        parts.extend(f"{n + 1}: {file_lines[n]}" for n in range(start, start + size))
        parts.append("Copy old_text exactly as it appears there, including spaces, tabs and blank lines.")
    else:
        closest = _closest_window(file_lines, wanted)
        if closest is not None:
            first, last = closest
            parts.append("The closest lines in the file are (line numbers added, not part of the file):")
            parts.extend(f"{n + 1}: {file_lines[n]}" for n in range(first, last))
        else:
            parts.append("Nothing in the file resembles it; the file may have changed.")
    parts.append(f"Call read_file on '{rel}' again and copy old_text exactly from it.")
    return "\n".join(parts)


def _closest_window(file_lines: list[str], wanted: list[str]) -> tuple[int, int] | None:
    """The run of len(wanted) file lines most similar to `wanted`, if similar enough."""
    size = min(len(wanted), len(file_lines))
    if size == 0:
        return None
    matcher = difflib.SequenceMatcher(autojunk=False)
    matcher.set_seq2("\n".join(wanted))
    best_ratio, best_start = CLOSE_MATCH_RATIO, None
    for start in range(len(file_lines) - size + 1):
        matcher.set_seq1("\n".join(file_lines[start:start + size]))
        # The cheap upper bounds skip most windows before the quadratic ratio().
        if matcher.real_quick_ratio() > best_ratio and matcher.quick_ratio() > best_ratio:
            ratio = matcher.ratio()
            if ratio > best_ratio:
                best_ratio, best_start = ratio, start
    return None if best_start is None else (best_start, best_start + size)
