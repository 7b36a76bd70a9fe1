"""Checkpoints of a file tool's write: record_after compares the named paths instead of scanning the workspace."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from core.checkpoints import CheckpointStore
from tests.core.test_checkpoints import tree_digest, write


@pytest.fixture
def store(state_dir: Path, workspace: Path) -> CheckpointStore:
    return CheckpointStore(state_dir, workspace)


@pytest.fixture
def project(workspace: Path) -> Path:
    """A small workspace with an executable, a symlink, an ignored file and nested directories."""
    write(workspace / ".gitignore", "*.env\nbuild/\n")
    write(workspace / "src" / "app.py", "print('v1')\n")
    write(workspace / "src" / "util" / "strings.py", "def pad(s):\n    return s\n")
    write(workspace / "run.sh", "#!/bin/sh\necho run\n")
    (workspace / "run.sh").chmod(0o755)
    os.symlink("src/app.py", workspace / "app-link")
    write(workspace / "local.env", "TOKEN=1\n")
    write(workspace / "build" / "out.bin", b"\x00build")
    return workspace


def git_calls(store: CheckpointStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The git commands the store runs from now on."""
    calls: list[str] = []
    run = store._run

    def counting(command: str, *args: str, **options: Any) -> Any:
        calls.append(command)
        return run(command, *args, **options)

    monkeypatch.setattr(store, "_run", counting)
    return calls


def shadow_git(store: CheckpointStore, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GIT_DIR": str(store.shadow_dir / "git"), "GIT_CONFIG_GLOBAL": os.devnull}
    return subprocess.run(["git", *args], env=env, capture_output=True, text=True, check=False)


def test_undo_after_file_tool_write_restores_exactly(
    store: CheckpointStore, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = tree_digest(project)
    store.snapshot("edit_file src/app.py", paths=["src/app.py"])
    write(project / "src" / "app.py", "print('v2')\n")
    calls = git_calls(store, monkeypatch)
    store.record_after()
    after = tree_digest(project)

    # No scan and no commit: the one git call stages the written file.
    assert calls == ["update_index"]
    assert store.history()[-1].files_changed_after == ("src/app.py",)
    assert store.undo().files == ("src/app.py",)
    assert tree_digest(project) == before
    assert store.redo().files == ("src/app.py",)
    assert tree_digest(project) == after


def test_undo_of_created_file_removes_it_and_its_new_directories(store: CheckpointStore, project: Path) -> None:
    before = tree_digest(project)
    store.snapshot("write_file pkg/deep/new.py", paths=["pkg/deep/new.py"])
    write(project / "pkg" / "deep" / "new.py", "NEW = 1\n")
    store.record_after()
    after = tree_digest(project)

    assert store.history()[-1].files_changed_after == ("pkg/deep/new.py",)
    store.undo()
    assert tree_digest(project) == before
    store.redo()
    assert tree_digest(project) == after


def test_unchanged_write_records_no_change_without_git(
    store: CheckpointStore, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.snapshot("write_file src/app.py", paths=["src/app.py"])
    write(project / "src" / "app.py", "print('v1')\n")
    calls = git_calls(store, monkeypatch)
    store.record_after()

    assert calls == []
    assert store.history()[-1].files_changed_after == ()
    assert store.undo().files == ()


def test_mode_and_link_changes_of_the_named_path_are_seen(store: CheckpointStore, project: Path) -> None:
    before = tree_digest(project)
    store.snapshot("chmod run.sh", paths=["run.sh"])
    (project / "run.sh").chmod(0o644)
    store.record_after()
    store.snapshot("relink app-link", paths=["app-link"])
    (project / "app-link").unlink()
    os.symlink("run.sh", project / "app-link")
    store.record_after()

    assert [c.files_changed_after for c in store.history()] == [("run.sh",), ("app-link",)]
    store.undo()
    store.undo()
    assert tree_digest(project) == before


def test_ignored_file_created_by_a_tool_is_restored_after_a_shell_deletes_it(
    store: CheckpointStore, project: Path
) -> None:
    store.snapshot("write_file dev.env", paths=["dev.env"])
    write(project / "dev.env", "SECRET=1\n")
    store.record_after()
    store.snapshot("run_command rm dev.env")
    subprocess.run(["rm", "dev.env"], cwd=project, check=True)
    store.record_after()

    assert store.history()[-1].files_changed_after == ("dev.env",)
    assert store.undo().files == ("dev.env",)
    assert (project / "dev.env").read_text() == "SECRET=1\n"


def test_shell_change_is_still_captured_in_full(store: CheckpointStore, project: Path) -> None:
    before = tree_digest(project)
    store.snapshot("run_command refactor")
    script = "mv src/util/strings.py src/strings.py && echo more >> src/app.py && rm run.sh && echo x > notes.md"
    subprocess.run(["sh", "-c", script], cwd=project, check=True)
    store.record_after()

    changed = store.history()[-1].files_changed_after
    assert changed == ("notes.md", "run.sh", "src/app.py", "src/strings.py", "src/util/strings.py")
    store.undo()
    assert tree_digest(project) == before


def test_other_changes_made_during_a_write_are_undone_too(store: CheckpointStore, project: Path) -> None:
    before = tree_digest(project)
    store.snapshot("edit_file src/app.py", paths=["src/app.py"])
    write(project / "src" / "app.py", "print('v2')\n")
    # The operator saves another file while the tool writes: record_after does not look, undo does.
    write(project / "src" / "util" / "strings.py", "operator edit\n")
    store.record_after()

    assert store.history()[-1].files_changed_after == ("src/app.py",)
    assert set(store.undo().files) == {"src/app.py", "src/util/strings.py"}
    assert tree_digest(project) == before


def test_writing_gitignore_scans_so_newly_visible_files_are_listed(store: CheckpointStore, project: Path) -> None:
    store.snapshot("write_file .gitignore", paths=[".gitignore"])
    write(project / ".gitignore", "*.env\n")
    store.record_after()

    assert store.history()[-1].files_changed_after == (".gitignore", "build/out.bin")


def test_record_after_by_another_store_instance_scans(state_dir: Path, project: Path) -> None:
    first = CheckpointStore(state_dir, project)
    first.snapshot("edit_file src/app.py", paths=["src/app.py"])
    write(project / "src" / "app.py", "print('v2')\n")

    CheckpointStore(state_dir, project).record_after()

    assert first.history()[-1].files_changed_after == ("src/app.py",)
    first.undo()
    assert (project / "src" / "app.py").read_text() == "print('v1')\n"


def test_checkpoint_commits_are_valid_git_objects(store: CheckpointStore, project: Path) -> None:
    name = os.fsdecode(b"caf\xe9.txt")
    store.snapshot(f"write_file {name}", paths=[name])
    write(project / name, "x")
    store.record_after()
    store.snapshot("run_command true")
    store.record_after()
    store.undo()
    store.redo()

    result = shadow_git(store, "fsck", "--strict", "--no-dangling")
    assert result.returncode == 0, result.stderr
    assert "error" not in result.stderr
