"""Hostile inputs: the path-escape and command-bypass corpora, huge and binary files."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import WorkspaceError
from tests.reliability import corpus
from tools import files
from tools.workspace import Workspace


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> corpus.Layout:
    return corpus.build_layout(tmp_path_factory.mktemp("hostile"))


def test_corpora_are_large_enough() -> None:
    assert len(corpus.load("path_escapes.jsonl")) >= 300
    assert len(corpus.load("command_bypasses.jsonl")) >= 500


def test_every_path_escape_is_refused_or_confined(layout: corpus.Layout) -> None:
    ws = Workspace(layout.root, corpus.policy().paths)
    failures = {case["path"][:120]: problems for case in corpus.load("path_escapes.jsonl")
                if (problems := corpus.check_path(ws, layout, case))}
    assert not failures


def test_writes_through_the_path_corpus_change_nothing_outside(tmp_path: Path) -> None:
    layout = corpus.build_layout(tmp_path)
    ws = Workspace(layout.root, corpus.policy().paths)
    before = layout.guarded_digest()
    failures = {case["path"][:120]: problems for case in corpus.load("path_escapes.jsonl")
                if (problems := corpus.check_write(ws, layout, case))}
    assert not failures
    assert layout.guarded_digest() == before


def test_no_command_bypass_is_allowed_in_any_mode(layout: corpus.Layout) -> None:
    policy = corpus.policy()
    failures = {case["command"]: problems for case in corpus.load("command_bypasses.jsonl")
                if (problems := corpus.check_command(policy, layout, case))}
    assert not failures


def test_huge_binary_and_undecodable_files_are_handled(workspace: Path) -> None:
    line = b"needle " + b"y" * 90 + b"\n"
    with open(workspace / "huge.txt", "wb") as handle:
        handle.write(line * (50 * 1024 * 1024 // len(line)))
    (workspace / "small.txt").write_text("needle here\n")
    (workspace / "blob.bin").write_bytes(bytes(range(256)) * 64)
    (workspace / "latin1.txt").write_bytes(b"caf\xe9 needle\n")
    ws = Workspace(workspace)
    shown = files.read_file(ws, "huge.txt")
    assert len(shown) <= files.READ_MAX_BYTES + 1000 and "start_line=2001" in shown
    assert "lines 500000-500002" in files.read_file(ws, "huge.txt", 500000, 500002)
    found = files.search_files(ws, "needle")
    assert "small.txt:1" in found and "huge.txt" not in found
    for name in ("blob.bin", "latin1.txt"):
        with pytest.raises(WorkspaceError, match="binary"):
            files.read_file(ws, name)
        with pytest.raises(WorkspaceError, match="binary"):
            files.plan_edit(ws, name, "needle", "pin")
    with pytest.raises(WorkspaceError, match="too large"):
        files.plan_edit(ws, "huge.txt", "needle", "pin")
