"""Read-only git views of the workspace for the model: status and diff, as readable, bounded text."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import WorkspaceError
from tools.shell import clip_middle

if TYPE_CHECKING:
    from git import Repo

DIFF_LIMIT_CHARS = 50_000
MAX_LISTED = 200  # files per status section; a missing .gitignore can leave thousands untracked

_CHANGE = {"M": "modified", "T": "type changed", "A": "added", "D": "deleted", "R": "renamed", "C": "copied"}
_CONFLICT = {"DD": "both deleted", "AU": "added by us", "UD": "deleted by them", "UA": "added by them",
             "DU": "deleted by us", "AA": "both added", "UU": "both modified"}


class _NoRepo(Exception):
    """Carries the sentence returned instead of a status or diff."""


def _git_env(root: Path) -> dict[str, str]:
    # The tools are unguarded, so repository config must not run programs (fsmonitor) and a workspace
    # mounted from another uid must still be readable (safe.directory). Optional locks off: status
    # must not rewrite .git/index under the operator's own git.
    return {"GIT_CONFIG_COUNT": "2", "GIT_CONFIG_KEY_0": "safe.directory", "GIT_CONFIG_VALUE_0": str(root),
            "GIT_CONFIG_KEY_1": "core.fsmonitor", "GIT_CONFIG_VALUE_1": "false", "GIT_OPTIONAL_LOCKS": "0",
            "GIT_TERMINAL_PROMPT": "0"}


@contextmanager
def _open_repo(root: Path) -> Iterator[Repo]:
    try:
        import git
    except ImportError as exc:  # GitPython refuses to import when no git executable is found
        raise _NoRepo("git is not installed in this environment; use list_dir and read_file instead") from exc
    root = root.resolve()
    try:
        repo = git.Repo(root)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
        raise _NoRepo(f"the workspace is not a git repository (no .git found at {root}); "
                      "use list_dir to see files") from exc
    try:
        repo.git.update_environment(**_git_env(root))
        yield repo
    except git.GitCommandNotFound as exc:
        raise _NoRepo("git is not installed in this environment; use list_dir and read_file instead") from exc
    except git.GitCommandError as exc:
        detail = (exc.stderr or "").strip().removeprefix("stderr:").strip(" '\n")
        raise WorkspaceError(f"git failed: {detail or exc}", hint="the repository may be damaged; "
                             "check it with `git status` in a terminal") from exc
    finally:
        repo.close()


def _listing(title: str, entries: list[str]) -> list[str]:
    if not entries:
        return []
    lines = [f"{title} ({len(entries)}):", *(f"  {e}" for e in entries[:MAX_LISTED])]
    if len(entries) > MAX_LISTED:
        lines.append(f"  ... and {len(entries) - MAX_LISTED:,} more")
    return lines


def _branch_line(headers: dict[str, str]) -> str:
    head = headers.get("branch.head", "")
    oid = headers.get("branch.oid", "")
    if head == "(detached)":
        line = f"HEAD detached at {oid[:7]}"
    else:
        line = f"on branch {head}"
        if oid == "(initial)":
            line += " (no commits yet)"
    upstream = headers.get("branch.upstream")
    if upstream:
        if "branch.ab" not in headers:
            line += f", upstream {upstream} is gone"
        else:
            ahead, behind = (int(x.lstrip("+-")) for x in headers["branch.ab"].split())
            counts = [f"{word} {n}" for word, n in (("ahead", ahead), ("behind", behind)) if n]
            line += f", {', '.join(counts)} of {upstream}" if counts else f", up to date with {upstream}"
    return line


def git_status(root: Path, *, hidden: Callable[[str], bool] | None = None) -> str:
    """Branch, upstream drift and the staged / unstaged / untracked / conflicted files.

    ``hidden`` (the policy's is_hidden) leaves out paths the agent must not see.
    """
    try:
        with _open_repo(root) as repo:
            raw = repo.git.status("--porcelain=v2", "--branch", "-z", strip_newline_in_stdout=False)
    except _NoRepo as exc:
        return str(exc)
    headers: dict[str, str] = {}
    staged: list[str] = []
    unstaged: list[str] = []
    untracked: list[str] = []
    conflicts: list[str] = []
    fields = iter(raw.split("\0"))
    for entry in fields:
        kind = entry[:1]
        if kind == "#":
            key, _, value = entry[2:].partition(" ")
            headers[key] = value
        elif entry and kind in "12u":
            xy = entry[2:4]
            path = entry.split(" ", {"1": 8, "2": 9, "u": 10}[kind])[-1]
            shown = f"{next(fields)} -> {path}" if kind == "2" else path
            if hidden is not None and hidden(path):
                continue
            if kind == "u":
                conflicts.append(f"{_CONFLICT.get(xy, xy)}: {path}")
                continue
            if xy[0] != ".":
                staged.append(f"{_CHANGE.get(xy[0], xy[0])}: {shown}")
            if xy[1] != ".":
                unstaged.append(f"{_CHANGE.get(xy[1], xy[1])}: {path}")
        elif kind == "?" and not (hidden is not None and hidden(entry[2:].rstrip("/"))):
            untracked.append(entry[2:])
    lines = [_branch_line(headers)]
    lines += _listing("conflicts", conflicts) + _listing("staged changes", staged)
    lines += _listing("unstaged changes", unstaged) + _listing("untracked files", untracked)
    if len(lines) == 1:
        lines.append("working tree clean")
    return "\n".join(lines)


def git_diff(root: Path, path: str | None = None, *, hidden: Callable[[str], bool] | None = None) -> str:
    """Staged and unstaged changes (labelled) and untracked file names, capped with head and tail kept.

    ``path`` is workspace-relative and already confined by the caller; ``hidden`` leaves out paths the
    agent must not see (their content would otherwise leak through the diff).
    """
    spec = [path] if path else []
    options = ("--no-color", "--no-ext-diff", "--no-textconv")
    try:
        with _open_repo(root) as repo:
            if hidden is not None:
                names = "\0".join([repo.git.diff("--name-only", "-z", "--cached", "--", *spec),
                                   repo.git.diff("--name-only", "-z", "--", *spec),
                                   repo.git.ls_files("-z", "--others", "--exclude-standard", "--", *spec)])
                spec += sorted({f":(exclude,literal){n}" for n in names.split("\0") if n and hidden(n)})
            staged = repo.git.diff("--cached", *options, "--", *spec)
            unstaged = repo.git.diff(*options, "--", *spec)
            untracked = [n for n in repo.git.ls_files("-z", "--others", "--exclude-standard", "--",
                                                      *spec).split("\0") if n]
    except _NoRepo as exc:
        return str(exc)
    parts = []
    if staged:
        parts.append(f"staged changes (git diff --cached):\n{staged}")
    if unstaged:
        parts.append(f"unstaged changes (git diff):\n{unstaged}")
    if untracked:
        parts.append("\n".join(_listing("untracked files, content not shown (use read_file)", untracked)))
    if not parts:
        return f"no changes in {path}" if path else "no changes"
    return clip_middle("\n\n".join(parts), DIFF_LIMIT_CHARS)
