"""Checkpoints: undo, redo and single-file restore on real files with a real shadow git store."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from core import checkpoints
from core.checkpoints import CheckpointError, CheckpointStore
from core.errors import AgentError


@pytest.fixture
def store(state_dir: Path, workspace: Path) -> CheckpointStore:
    return CheckpointStore(state_dir, workspace)


def write(path: Path, data: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)


def tree_digest(root: Path) -> dict[str, tuple[int, str]]:
    """Every entry under ``root`` with its mode and content hash (link target for symlinks)."""
    result: dict[str, tuple[int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                content = os.readlink(path)
            elif stat.S_ISREG(info.st_mode):
                content = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                content = "dir"
            result[str(path.relative_to(root))] = (info.st_mode, content)
    return result


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    identity = ["-c", "user.name=Operator", "-c", "user.email=op@example.com"]
    return subprocess.run(
        ["git", *identity, *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout


def test_undo_restores_content_written_after_snapshot(store: CheckpointStore, workspace: Path) -> None:
    write(workspace / "app.py", "print('v1')\n")
    checkpoint = store.snapshot("write app.py", paths=["app.py"])
    write(workspace / "app.py", "print('v2')\n")
    store.record_after()

    result = store.undo()

    assert (workspace / "app.py").read_text() == "print('v1')\n"
    assert result.action == "undo"
    assert result.checkpoint == checkpoint
    assert result.files == ("app.py",)
    assert store.can_redo and not store.can_undo


def test_undo_deletes_created_file_and_its_empty_directories(store: CheckpointStore, workspace: Path) -> None:
    write(workspace / "keep.txt", "keep")
    store.snapshot("create pkg/sub/mod.py", paths=["pkg/sub/mod.py"])
    write(workspace / "pkg" / "sub" / "mod.py", "x = 1\n")
    write(workspace / "other" / "made.txt", "also new")
    write(workspace / "other" / "data.log", "ignored, never snapshotted")
    write(workspace / ".gitignore", "*.log\n")

    result = store.undo()

    assert not (workspace / "pkg").exists()
    assert not (workspace / "other" / "made.txt").exists()
    # The ignored file keeps its directory alive: only empty directories are removed.
    assert (workspace / "other" / "data.log").read_text() == "ignored, never snapshotted"
    assert (workspace / "keep.txt").read_text() == "keep"
    assert result.files == (".gitignore", "other/made.txt", "pkg/sub/mod.py")


def test_undo_restores_file_deleted_and_edited_by_shell_command(store: CheckpointStore, workspace: Path) -> None:
    write(workspace / "src" / "a.c", "int a;\n")
    write(workspace / "notes.md", "notes\n")
    write(workspace / "b.txt", "b\n")
    store.snapshot("run: rm -r src && edit")
    subprocess.run(["sh", "-c", "rm -r src && echo more >> notes.md"], cwd=workspace, check=True)
    os.remove(workspace / "b.txt")

    result = store.undo()

    assert (workspace / "src" / "a.c").read_text() == "int a;\n"
    assert (workspace / "notes.md").read_text() == "notes\n"
    assert (workspace / "b.txt").read_text() == "b\n"
    assert result.files == ("b.txt", "notes.md", "src/a.c")


def test_redo_returns_to_state_after_change(store: CheckpointStore, workspace: Path) -> None:
    write(workspace / "f.txt", "before")
    store.snapshot("edit f.txt")
    write(workspace / "f.txt", "after")
    write(workspace / "g.txt", "created")
    store.record_after()
    store.undo()
    assert not (workspace / "g.txt").exists()

    result = store.redo()

    assert result.action == "redo"
    assert result.files == ("f.txt", "g.txt")
    assert (workspace / "f.txt").read_text() == "after"
    assert (workspace / "g.txt").read_text() == "created"
    assert store.can_undo and not store.can_redo


def test_redo_without_record_after_returns_to_state_undo_replaced(store: CheckpointStore, workspace: Path) -> None:
    write(workspace / "f.txt", "before")
    store.snapshot("command")
    write(workspace / "f.txt", "by the command")
    write(workspace / "f.txt", "then edited by the operator")

    store.undo()
    store.redo()

    assert (workspace / "f.txt").read_text() == "then edited by the operator"


def test_undo_twice_then_redo_twice(store: CheckpointStore, workspace: Path) -> None:
    write(workspace / "f.txt", "1")
    store.snapshot("to 2")
    write(workspace / "f.txt", "2")
    store.record_after()
    store.snapshot("to 3")
    write(workspace / "f.txt", "3")
    store.record_after()

    store.undo()
    assert (workspace / "f.txt").read_text() == "2"
    store.undo()
    assert (workspace / "f.txt").read_text() == "1"
    assert not store.can_undo
    store.redo()
    assert (workspace / "f.txt").read_text() == "2"
    store.redo()
    assert (workspace / "f.txt").read_text() == "3"
    assert not store.can_redo
    store.undo()
    assert (workspace / "f.txt").read_text() == "2"


def test_new_snapshot_after_undo_clears_redo(store: CheckpointStore, workspace: Path) -> None:
    write(workspace / "f.txt", "1")
    store.snapshot("to 2")
    write(workspace / "f.txt", "2")
    store.undo()
    assert store.can_redo

    store.snapshot("to 9")
    write(workspace / "f.txt", "9")

    assert not store.can_redo
    with pytest.raises(CheckpointError, match="nothing to redo"):
        store.redo()
    store.undo()
    assert (workspace / "f.txt").read_text() == "1"


def test_nothing_to_undo_or_redo_raises(store: CheckpointStore) -> None:
    with pytest.raises(CheckpointError, match="nothing to undo") as undo_error:
        store.undo()
    with pytest.raises(CheckpointError, match="nothing to redo"):
        store.redo()
    with pytest.raises(CheckpointError, match="snapshot"):
        store.record_after()
    assert isinstance(undo_error.value, AgentError)
    assert undo_error.value.hint


def test_restore_file_brings_back_one_file_and_is_undoable(store: CheckpointStore, workspace: Path) -> None:
    write(workspace / "a.txt", "a1")
    write(workspace / "b.txt", "b1")
    first = store.snapshot("edit both")
    write(workspace / "a.txt", "a2")
    write(workspace / "b.txt", "b2")
    store.record_after()

    result = store.restore_file("a.txt", first)

    assert result == checkpoints.RestoreResult("restore_file", first, ("a.txt",))
    assert (workspace / "a.txt").read_text() == "a1"
    assert (workspace / "b.txt").read_text() == "b2"
    store.undo()
    assert (workspace / "a.txt").read_text() == "a2"


def test_restore_file_deletes_file_absent_at_checkpoint(store: CheckpointStore, workspace: Path) -> None:
    first = store.snapshot("create dir/new.txt")
    write(workspace / "dir" / "new.txt", "new")

    result = store.restore_file("dir/new.txt", first)

    assert result.files == ("dir/new.txt",)
    assert not (workspace / "dir").exists()
    assert store.restore_file("dir/new.txt", first).files == ()
    store.undo()
    store.undo()
    assert (workspace / "dir" / "new.txt").read_text() == "new"


def test_restore_file_refuses_unknown_checkpoint_and_outside_paths(store: CheckpointStore, workspace: Path) -> None:
    write(workspace / "a.txt", "a")
    checkpoint = store.snapshot("x")
    with pytest.raises(CheckpointError, match="unknown checkpoint"):
        store.restore_file("a.txt", "0" * 40)
    with pytest.raises(CheckpointError, match="unknown checkpoint"):
        store.restore_file("a.txt", "HEAD")
    with pytest.raises(CheckpointError, match="inside the workspace"):
        store.restore_file("../escape.txt", checkpoint)
    with pytest.raises(CheckpointError, match="outside the workspace"):
        store.restore_file("/etc/passwd", checkpoint)
    with pytest.raises(CheckpointError, match="inside the workspace"):
        store.restore_file(".git/config", checkpoint)


def test_executable_bit_and_symlink_restored(store: CheckpointStore, workspace: Path) -> None:
    script = workspace / "run.sh"
    write(script, "#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    write(workspace / "plain.txt", "plain")
    os.symlink("plain.txt", workspace / "link")
    store.snapshot("chmod and relink")
    subprocess.run(
        ["sh", "-c", "chmod -x run.sh && chmod +x plain.txt && rm link && echo f > link"], cwd=workspace, check=True
    )

    result = store.undo()

    assert set(result.files) == {"run.sh", "plain.txt", "link"}
    assert os.access(script, os.X_OK)
    assert script.stat().st_mode & 0o111 == 0o111
    assert (workspace / "plain.txt").stat().st_mode & 0o111 == 0
    assert os.readlink(workspace / "link") == "plain.txt"
    store.redo()
    assert script.stat().st_mode & 0o111 == 0
    assert (workspace / "link").read_text() == "f\n"


def test_undo_leaves_ignored_and_never_snapshotted_files_alone(store: CheckpointStore, workspace: Path) -> None:
    write(workspace / ".gitignore", "build/\n*.tmp\n")
    write(workspace / "build" / "out.bin", b"old build")
    write(workspace / "main.c", "v1")
    store.snapshot("make")
    write(workspace / "main.c", "v2")
    write(workspace / "build" / "out.bin", b"new build")
    write(workspace / "build" / "extra.o", b"object")
    write(workspace / "scratch.tmp", "scratch")

    result = store.undo()

    assert result.files == ("main.c",)
    assert (workspace / "main.c").read_text() == "v1"
    assert (workspace / "build" / "out.bin").read_bytes() == b"new build"
    assert (workspace / "build" / "extra.o").read_bytes() == b"object"
    assert (workspace / "scratch.tmp").read_text() == "scratch"


def test_force_added_ignored_path_is_undoable(store: CheckpointStore, workspace: Path) -> None:
    write(workspace / ".gitignore", "*.env\n")
    write(workspace / "local.env", "A=1\n")
    store.snapshot("edit local.env", paths=["local.env"])
    write(workspace / "local.env", "A=2\n")
    store.record_after()
    store.snapshot("create dev.env", paths=["dev.env"])
    write(workspace / "dev.env", "B=1\n")
    store.record_after()

    assert store.undo().files == ("dev.env",)
    assert not (workspace / "dev.env").exists()
    assert store.undo().files == ("local.env",)
    assert (workspace / "local.env").read_text() == "A=1\n"
    store.redo()
    store.redo()
    assert (workspace / "local.env").read_text() == "A=2\n"
    assert (workspace / "dev.env").read_text() == "B=1\n"


def test_ignored_file_brought_back_by_undo_stays_tracked(store: CheckpointStore, workspace: Path) -> None:
    write(workspace / ".gitignore", "*.env\n")
    write(workspace / "local.env", "A=1\n")
    store.snapshot("edit local.env", paths=["local.env"])
    (workspace / "local.env").unlink()
    store.undo()
    assert (workspace / "local.env").read_text() == "A=1\n"

    store.snapshot("run: configure")
    write(workspace / "local.env", "A=clobbered\n")
    result = store.undo()

    assert result.files == ("local.env",)
    assert (workspace / "local.env").read_text() == "A=1\n"


def test_undo_does_not_overwrite_ignored_file_in_the_way(store: CheckpointStore, workspace: Path) -> None:
    write(workspace / "cache.db", "snapshotted")
    store.snapshot("ignore and replace cache.db")
    (workspace / "cache.db").unlink()
    store.record_after()
    write(workspace / ".gitignore", "cache.db\n")
    store.snapshot("keep ignoring")
    write(workspace / "cache.db", "user data written while ignored")

    store.undo()
    result = store.undo()

    assert "cache.db" in result.skipped
    assert (workspace / "cache.db").read_text() == "user data written while ignored"
    assert not (workspace / ".gitignore").exists()


def test_workspace_git_repository_is_untouched(
    state_dir: Path, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    git(workspace, "init", "-q")
    write(workspace / "tracked.txt", "v1")
    write(workspace / ".gitignore", "*.log\n")
    git(workspace, "add", "-A")
    git(workspace, "commit", "-q", "-m", "initial")
    write(workspace / "tracked.txt", "v1 staged")
    git(workspace, "add", "tracked.txt")
    write(workspace / ".git" / "hooks" / "pre-commit", "#!/bin/sh\nexit 1\n")
    before = tree_digest(workspace / ".git")
    # As if the agent were started from a git hook: inherited variables point at the operator's repo.
    monkeypatch.setenv("GIT_DIR", str(workspace / ".git"))
    monkeypatch.setenv("GIT_INDEX_FILE", str(workspace / ".git" / "index"))
    monkeypatch.setenv("GIT_OBJECT_DIRECTORY", str(workspace / ".git" / "objects"))
    store = CheckpointStore(state_dir, workspace)

    first = store.snapshot("edit", paths=["tracked.txt"])
    write(workspace / "tracked.txt", "v2")
    write(workspace / "new.txt", "new")
    store.record_after()
    store.undo()
    store.redo()
    store.restore_file("tracked.txt", first)
    store.undo()
    store.history()

    assert tree_digest(workspace / ".git") == before
    assert git(workspace, "status", "--porcelain") == "MM tracked.txt\n?? new.txt\n"
    assert all(".git" not in change.split("/") for c in store.history() for change in c.files_changed_after)


def test_history_survives_restart_and_sessions_are_separate(state_dir: Path, workspace: Path) -> None:
    first = CheckpointStore(state_dir, workspace, session_id="s1")
    write(workspace / "f.txt", "1")
    checkpoint = first.snapshot("edit f.txt")
    write(workspace / "f.txt", "2")
    first.record_after()
    del first

    resumed = CheckpointStore(state_dir, workspace, session_id="s1")
    other = CheckpointStore(state_dir, workspace, session_id="s2")

    assert [c.id for c in resumed.history()] == [checkpoint]
    assert resumed.history()[0].label == "edit f.txt"
    assert resumed.history()[0].files_changed_after == ("f.txt",)
    assert not other.can_undo and other.history() == []
    resumed.undo()
    assert (workspace / "f.txt").read_text() == "1"
    assert CheckpointStore(state_dir, workspace, session_id="s1").can_redo


def test_unchanged_workspace_still_yields_distinct_checkpoints(store: CheckpointStore, workspace: Path) -> None:
    write(workspace / "f.txt", "same")
    first = store.snapshot("one")
    second = store.snapshot("two")

    assert first != second
    assert [c.label for c in store.history()] == ["one", "two"]
    assert store.undo().files == ()


def test_non_utf8_names_and_binary_content_round_trip(store: CheckpointStore, workspace: Path) -> None:
    name = os.fsdecode(b"caf\xe9-\xff.bin")
    payload = bytes(range(256)) * 64 + b"\r\n\x00\r\n"
    write(workspace / name, payload)
    write(workspace / "crlf.txt", b"line\r\nline\r\n")
    store.snapshot("mangle binaries", paths=[name])
    write(workspace / name, b"mangled")
    (workspace / "crlf.txt").unlink()
    write(workspace / os.fsdecode(b"new-\xfe.txt"), "new")

    result = store.undo()

    assert (workspace / name).read_bytes() == payload
    assert (workspace / "crlf.txt").read_bytes() == b"line\r\nline\r\n"
    assert not (workspace / os.fsdecode(b"new-\xfe.txt")).exists()
    assert set(result.files) == {name, "crlf.txt", os.fsdecode(b"new-\xfe.txt")}
    store.redo()
    assert (workspace / name).read_bytes() == b"mangled"
    restarted = CheckpointStore(store.shadow_dir.parent.parent, workspace)
    assert restarted.undo().files == tuple(sorted(result.files))


def test_state_dir_inside_workspace_is_never_snapshotted(workspace: Path) -> None:
    store = CheckpointStore(workspace / ".agent-state", workspace)
    write(workspace / "a.txt", "1")
    store.snapshot("edit a.txt")
    write(workspace / "a.txt", "2")
    write(workspace / ".agent-state" / "sessions" / "x" / "events.jsonl", "{}\n")

    result = store.undo()

    assert result.files == ("a.txt",)
    assert (workspace / ".agent-state" / "sessions" / "x" / "events.jsonl").exists()
    assert store.can_redo


def test_nested_repository_is_excluded(store: CheckpointStore, workspace: Path) -> None:
    (workspace / "vendor").mkdir()
    git(workspace / "vendor", "init", "-q")
    write(workspace / "vendor" / "lib.c", "lib")
    write(workspace / "main.c", "v1")
    store.snapshot("edit main.c")
    write(workspace / "main.c", "v2")
    (workspace / "vendor" / "lib.c").unlink()

    result = store.undo()

    assert result.files == ("main.c",)
    assert not (workspace / "vendor" / "lib.c").exists()


def test_files_over_the_size_limit_are_skipped_and_kept(
    store: CheckpointStore, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoints, "MAX_FILE_BYTES", 100)
    write(workspace / "big.dat", b"x" * 50)
    write(workspace / "small.txt", "s1")
    store.snapshot("grow big.dat", paths=["big.dat"])
    write(workspace / "big.dat", b"y" * 500)
    write(workspace / "small.txt", "s2")
    store.snapshot("create huge.dat", paths=["huge.dat"])
    write(workspace / "huge.dat", b"z" * 500)

    assert store.undo().files == ()
    assert (workspace / "huge.dat").exists()
    result = store.undo()

    assert result.files == ("small.txt",)
    assert "big.dat" in result.skipped
    assert (workspace / "big.dat").read_bytes() == b"y" * 500
    with pytest.raises(CheckpointError, match="not covered"):
        store.restore_file("big.dat", store.history()[0].id)


def test_concurrent_stores_do_not_corrupt_the_shadow_index(state_dir: Path, workspace: Path) -> None:
    for i in range(30):
        write(workspace / f"f{i}.txt", str(i))
    stores = [CheckpointStore(state_dir, workspace) for _ in range(3)]
    errors: list[BaseException] = []

    def take(store: CheckpointStore, n: int) -> None:
        try:
            for i in range(5):
                store.snapshot(f"t{n}-{i}")
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=take, args=(s, n)) for n, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(stores[0].history()) == 15
    assert len({c.id for c in stores[0].history()}) == 15


def test_invalid_session_id_and_missing_workspace_rejected(state_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="session id"):
        CheckpointStore(state_dir, tmp_path, session_id="../x")
    with pytest.raises(CheckpointError, match="not a directory"):
        CheckpointStore(state_dir, tmp_path / "missing")


def test_corrupt_history_file_names_the_fix(store: CheckpointStore) -> None:
    store.snapshot("x")
    history_file = store.shadow_dir / "stacks" / "default.json"
    history_file.write_text("{not json")

    with pytest.raises(CheckpointError, match="unreadable") as error:
        store.undo()
    assert str(history_file) in error.value.hint


def test_the_shadow_repository_is_created_by_the_first_snapshot(state_dir: Path, workspace: Path) -> None:
    store = CheckpointStore(state_dir, workspace)
    assert not (store.shadow_dir / "ready").exists()
    assert store.history() == [] and not store.can_undo
    write(workspace / "a.txt", "1")
    store.snapshot("edit")
    write(workspace / "a.txt", "2")
    store.record_after()

    assert (store.shadow_dir / "ready").exists()
    store.undo()
    assert (workspace / "a.txt").read_text() == "1"


def test_a_missing_git_is_a_checkpoint_error(store: CheckpointStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "git", None)  # what importing GitPython without git raises
    with pytest.raises(CheckpointError, match="need git") as error:
        store.snapshot("x")
    assert "install git" in error.value.hint
