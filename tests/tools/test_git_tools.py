"""git_status and git_diff on real temporary repositories."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from core.policy_types import PathRules
from tools.git_tools import DIFF_LIMIT_CHARS, git_diff, git_status

GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent"}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, env=GIT_ENV, check=True, capture_output=True,
                          text=True).stdout


def make_repo(path: Path, files: dict[str, str] | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    for name, text in (files or {}).items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    if files:
        git(path, "add", "-A")
        git(path, "commit", "-q", "-m", "initial")
    return path


def test_not_a_repository(workspace: Path) -> None:
    expected = (f"the workspace is not a git repository (no .git found at {workspace.resolve()}); "
                "use list_dir to see files")
    assert git_status(workspace) == expected
    assert git_diff(workspace) == expected


def test_clean_repository(workspace: Path) -> None:
    make_repo(workspace, {"a.txt": "one\n"})
    assert git_status(workspace) == "on branch main\nworking tree clean"
    assert git_diff(workspace) == "no changes"
    assert git_diff(workspace, "a.txt") == "no changes in a.txt"


def test_repository_without_commits(workspace: Path) -> None:
    make_repo(workspace)
    (workspace / "staged.txt").write_text("hello\n")
    (workspace / "loose.txt").write_text("never shown\n")
    git(workspace, "add", "staged.txt")
    assert git_status(workspace) == ("on branch main (no commits yet)\n"
                                     "staged changes (1):\n  added: staged.txt\n"
                                     "untracked files (1):\n  loose.txt")
    diff = git_diff(workspace)
    assert diff.startswith("staged changes (git diff --cached):\ndiff --git a/staged.txt b/staged.txt")
    assert "+hello" in diff
    assert diff.endswith("untracked files, content not shown (use read_file) (1):\n  loose.txt")
    assert "never shown" not in diff


def test_modified_staged_deleted_renamed_untracked(workspace: Path) -> None:
    make_repo(workspace, {"a.txt": "a\n", "b.txt": "b\n", "c.txt": "c\n", "d.txt": "d\n"})
    (workspace / "a.txt").write_text("a changed\n")
    (workspace / "b.txt").write_text("b staged\n")
    git(workspace, "add", "b.txt")
    (workspace / "c.txt").unlink()
    git(workspace, "mv", "d.txt", "e.txt")
    (workspace / "new").mkdir()
    (workspace / "new" / "f.txt").write_text("f\n")
    status = git_status(workspace)
    assert status == ("on branch main\n"
                      "staged changes (2):\n  modified: b.txt\n  renamed: d.txt -> e.txt\n"
                      "unstaged changes (2):\n  modified: a.txt\n  deleted: c.txt\n"
                      "untracked files (1):\n  new/")
    diff = git_diff(workspace)
    staged, unstaged = diff.split("\n\nunstaged changes (git diff):\n")
    assert staged.startswith("staged changes (git diff --cached):\n")
    assert "+b staged" in staged and "a changed" not in staged
    assert "+a changed" in unstaged and "-c" in unstaged and "b staged" not in unstaged
    assert unstaged.endswith("untracked files, content not shown (use read_file) (1):\n  new/f.txt")


def test_diff_path_filter(workspace: Path) -> None:
    make_repo(workspace, {"a.txt": "a\n", "src/b.py": "b = 1\n"})
    (workspace / "a.txt").write_text("a changed\n")
    (workspace / "src" / "b.py").write_text("b = 2\n")
    only_src = git_diff(workspace, "src")
    assert "+b = 2" in only_src and "a.txt" not in only_src
    assert git_diff(workspace, "docs") == "no changes in docs"


def test_big_diff_keeps_head_and_tail(workspace: Path) -> None:
    make_repo(workspace, {"big.txt": "".join(f"old line {i}\n" for i in range(20_000))})
    (workspace / "big.txt").write_text("".join(f"new line {i}\n" for i in range(20_000)))
    diff = git_diff(workspace)
    assert diff.startswith("unstaged changes (git diff):\ndiff --git a/big.txt b/big.txt")
    assert "characters omitted: showing the first 25,000 and the last 25,000 ...]" in diff
    assert diff.endswith("+new line 19999")
    assert len(diff) < DIFF_LIMIT_CHARS + 200


def test_upstream_and_detached_head(tmp_path: Path) -> None:
    origin = make_repo(tmp_path / "origin", {"a.txt": "a\n"})
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(origin), str(clone))
    assert git_status(clone) == "on branch main, up to date with origin/main\nworking tree clean"
    (clone / "a.txt").write_text("ahead\n")
    git(clone, "commit", "-qam", "local")
    (origin / "a.txt").write_text("behind\n")
    git(origin, "commit", "-qam", "remote")
    git(clone, "fetch", "-q")
    assert git_status(clone).startswith("on branch main, ahead 1, behind 1 of origin/main\n")
    head = git(clone, "rev-parse", "--short=7", "HEAD").strip()
    git(clone, "checkout", "-q", "--detach")
    assert git_status(clone) == f"HEAD detached at {head}\nworking tree clean"


def test_merge_conflict_is_listed(workspace: Path) -> None:
    make_repo(workspace, {"f.txt": "base\n"})
    git(workspace, "checkout", "-q", "-b", "other")
    (workspace / "f.txt").write_text("other\n")
    git(workspace, "commit", "-qam", "other")
    git(workspace, "checkout", "-q", "main")
    (workspace / "f.txt").write_text("main\n")
    git(workspace, "commit", "-qam", "main")
    subprocess.run(["git", "merge", "-q", "other"], cwd=workspace, env=GIT_ENV, capture_output=True)
    assert "conflicts (1):\n  both modified: f.txt" in git_status(workspace)


def test_hidden_paths_are_left_out(workspace: Path) -> None:
    rules = PathRules()
    make_repo(workspace, {".env": "TOKEN=old\n", "app.py": "x = 1\n"})
    (workspace / ".env").write_text("TOKEN=hunter2\n")
    (workspace / "app.py").write_text("x = 2\n")
    (workspace / "server.pem").write_text("PRIVATE\n")
    status = git_status(workspace, hidden=rules.is_hidden)
    assert ".env" not in status and "server.pem" not in status and "modified: app.py" in status
    diff = git_diff(workspace, hidden=rules.is_hidden)
    assert "hunter2" not in diff and ".env" not in diff and "server.pem" not in diff
    assert "+x = 2" in diff
    assert "hunter2" in git_diff(workspace)  # the filter, not luck, kept it out


def test_repository_config_cannot_run_programs(workspace: Path, tmp_path: Path) -> None:
    make_repo(workspace, {"a.txt": "a\n"})
    marker = tmp_path / "ran"
    hook = tmp_path / "hook.sh"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\ncat \"$1\" 2>/dev/null\n")
    hook.chmod(0o755)
    git(workspace, "config", "core.fsmonitor", str(hook))
    git(workspace, "config", "diff.evil.textconv", str(hook))
    git(workspace, "config", "diff.external", str(hook))
    (workspace / ".gitattributes").write_text("*.txt diff=evil\n")
    (workspace / "a.txt").write_text("changed\n")
    assert "modified: a.txt" in git_status(workspace)
    assert "+changed" in git_diff(workspace)
    assert not marker.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to hand the repository to another user")
def test_repository_owned_by_another_user(workspace: Path) -> None:
    # The container case: the mounted project belongs to the host user, the agent runs as someone else.
    make_repo(workspace, {"a.txt": "a\n"})
    (workspace / "a.txt").write_text("b\n")
    for dirpath, dirnames, filenames in os.walk(workspace):
        for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
            os.lchown(name, 12345, 12345)
    assert "dubious ownership" in subprocess.run(["git", "status"], cwd=workspace, env=GIT_ENV,
                                                 capture_output=True, text=True).stderr
    assert "modified: a.txt" in git_status(workspace)
    assert "+b" in git_diff(workspace)
