"""Checkpoint store upkeep: histories are bounded and what no history lists leaves the store."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from core import checkpoints
from core.checkpoints import CheckpointError, CheckpointStore
from tests.core.test_checkpoints import tree_digest, write


def shadow_git(store: CheckpointStore, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GIT_DIR": str(store.shadow_dir / "git"), "GIT_CONFIG_GLOBAL": os.devnull}
    return subprocess.run(["git", *args], env=env, input=stdin, capture_output=True, text=True, check=False)


def blob_of(store: CheckpointStore, content: str) -> str:
    return shadow_git(store, "hash-object", "--stdin", stdin=content).stdout.strip()


def in_store(store: CheckpointStore, sha: str) -> bool:
    return shadow_git(store, "cat-file", "-e", sha).returncode == 0


def edit(store: CheckpointStore, workspace: Path, content: str) -> str:
    checkpoint = store.snapshot(f"write_file f.txt ({content})", paths=["f.txt"])
    write(workspace / "f.txt", content)
    store.record_after()
    return checkpoint


def test_history_keeps_the_newest_checkpoints_only(
    state_dir: Path, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoints, "KEEP_CHECKPOINTS", 3)
    store = CheckpointStore(state_dir, workspace)
    write(workspace / "f.txt", "v0")
    for n in range(1, 6):
        edit(store, workspace, f"v{n}")

    assert [c.label for c in store.history()] == [f"write_file f.txt (v{n})" for n in (3, 4, 5)]
    for n in (4, 3, 2):
        store.undo()
        assert (workspace / "f.txt").read_text() == f"v{n}"
    with pytest.raises(CheckpointError, match="nothing to undo"):
        store.undo()


def test_collect_garbage_deletes_only_what_no_history_lists(
    state_dir: Path, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoints, "KEEP_CHECKPOINTS", 2)
    store = CheckpointStore(state_dir, workspace)
    write(workspace / "f.txt", "forgotten version")
    forgotten = edit(store, workspace, "v1")
    edit(store, workspace, "v2")
    kept = edit(store, workspace, "v3")
    latest = tree_digest(workspace)
    assert in_store(store, forgotten) and in_store(store, blob_of(store, "forgotten version"))

    store.collect_garbage()

    assert not in_store(store, forgotten)
    assert not in_store(store, blob_of(store, "forgotten version"))
    assert in_store(store, kept) and in_store(store, blob_of(store, "v2"))
    assert tree_digest(workspace) == latest
    store.undo()
    store.undo()
    assert (workspace / "f.txt").read_text() == "v1"
    store.redo()
    assert (workspace / "f.txt").read_text() == "v2"
    result = shadow_git(store, "fsck", "--strict", "--no-dangling")
    assert result.returncode == 0, result.stderr


def test_deleted_sessions_lose_their_checkpoints(state_dir: Path, workspace: Path) -> None:
    (state_dir / "sessions" / "s1").mkdir(parents=True)
    (state_dir / "sessions" / "s2").mkdir()
    gone = CheckpointStore(state_dir, workspace, session_id="s1")
    write(workspace / "a.txt", "only s1 saw this")
    gone_checkpoint = gone.snapshot("s1 edit", paths=["a.txt"])
    write(workspace / "a.txt", "s1 wrote this")
    gone.record_after()
    alive = CheckpointStore(state_dir, workspace, session_id="s2")
    alive.snapshot("s2 edit", paths=["a.txt"])
    write(workspace / "a.txt", "s2 wrote this")
    alive.record_after()
    (state_dir / "sessions" / "s1").rmdir()

    alive.collect_garbage()

    assert not (alive.shadow_dir / "stacks" / "s1.json").exists()
    assert not in_store(alive, gone_checkpoint)
    assert not in_store(alive, blob_of(alive, "only s1 saw this"))
    alive.undo()
    assert (workspace / "a.txt").read_text() == "s1 wrote this"


def test_stores_without_session_logs_keep_everything(state_dir: Path, workspace: Path) -> None:
    first = CheckpointStore(state_dir, workspace, session_id="one")
    write(workspace / "a.txt", "1")
    checkpoint = first.snapshot("edit", paths=["a.txt"])
    write(workspace / "a.txt", "2")
    first.record_after()

    CheckpointStore(state_dir, workspace, session_id="two").collect_garbage()

    assert in_store(first, checkpoint)
    first.undo()
    assert (workspace / "a.txt").read_text() == "1"


def test_unreadable_history_stops_the_collection(state_dir: Path, workspace: Path) -> None:
    store = CheckpointStore(state_dir, workspace, session_id="mine")
    write(workspace / "a.txt", "1")
    checkpoint = store.snapshot("edit")
    (store.shadow_dir / "stacks" / "other.json").write_text("{not json")

    with pytest.raises(CheckpointError, match="unreadable"):
        store.collect_garbage()
    assert in_store(store, checkpoint)


def test_refs_of_older_stores_are_replaced(state_dir: Path, workspace: Path) -> None:
    store = CheckpointStore(state_dir, workspace)
    write(workspace / "a.txt", "1")
    checkpoint = store.snapshot("edit")
    # Older versions chained every checkpoint of a session under one ref, so none could ever go.
    shadow_git(store, "update-ref", "refs/dev-agent/sessions/default", checkpoint)

    store.collect_garbage()

    refs = shadow_git(store, "for-each-ref", "--format=%(refname)").stdout.split()
    assert refs == [f"refs/dev-agent/keep/{checkpoint}"]


def test_opening_a_store_collects_once_the_interval_has_passed(state_dir: Path, workspace: Path) -> None:
    (state_dir / "sessions" / "gone").mkdir(parents=True)
    (state_dir / "sessions" / "here").mkdir()
    gone = CheckpointStore(state_dir, workspace, session_id="gone")
    write(workspace / "a.txt", "1")
    gone.snapshot("edit")
    (state_dir / "sessions" / "gone").rmdir()
    stacks = gone.shadow_dir / "stacks" / "gone.json"
    stamp = gone.shadow_dir / "gc-stamp"

    CheckpointStore(state_dir, workspace, session_id="here")
    assert stacks.exists()

    old = time.time() - checkpoints.GC_INTERVAL_S - 60
    os.utime(stamp, (old, old))
    CheckpointStore(state_dir, workspace, session_id="here")
    assert not stacks.exists()
    assert stamp.stat().st_mtime > old + 60
