"""Property tests: no generated path, however twisted, resolves or writes outside the workspace."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import WorkspaceError
from tools.files import apply_change, plan_write
from tools.workspace import Workspace

PROPERTY_SETTINGS = settings(max_examples=2000, deadline=None,
                             suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, Path, Path]:
    """base/ws is the workspace, base/outside the sentinel that must never change.

    Inside the workspace: plain dirs and files, hidden and read-only paths, and symlinks leading
    inside, outside, to '/', into /proc, up and out, and in loops.
    """
    base = tmp_path_factory.mktemp("layout").resolve()
    root = base / "ws"
    outside = base / "outside"
    (root / "a" / "deep").mkdir(parents=True)
    (root / "b").mkdir()
    (root / ".git").mkdir()
    (root / "a" / "f.txt").write_text("inside\n")
    (root / ".env").write_text("KEY=secret\n")
    (root / ".git" / "config").write_text("[core]\n")
    (outside / "sub").mkdir(parents=True)
    (outside / "secret.txt").write_text("outside\n")
    (outside / "sub" / "inner.txt").write_text("inner\n")
    links = {
        "link_in": "a",
        "link_in_abs": str(root / "a"),
        "link_out": "../outside",
        "link_out_abs": str(outside),
        "link_root": "/",
        "link_proc": "/proc/self/root",
        "link_cwd": "/proc/self/cwd",
        "link_fd": "/dev/fd",
        "link_up": "..",
        "loop": "loop",
        "loop2": "loop3",
        "loop3": "loop2",
        "env_link": ".env",
        "git_link": ".git",
        "dangling_out": str(outside / "new.txt"),
        "dangling_in": "b/new.txt",
    }
    for name, target in links.items():
        (root / name).symlink_to(target)
    (root / "a" / "deep" / "back").symlink_to("../..")
    (root / "b" / "out").symlink_to("../../outside/sub")
    return Workspace(root), outside, base


def segments_for(root: Path, outside: Path) -> list[str]:
    return [
        "..", ".", "", "a", "b", "deep", "back", "out", "f.txt", "new", "x.pem", "~", "~x", ".env", ".git", "config",
        "link_in", "link_in_abs", "link_out", "link_out_abs", "link_root", "link_proc", "link_cwd", "link_fd",
        "link_up", "loop", "loop2", "loop3", "env_link", "git_link", "dangling_out", "dangling_in", "secret.txt",
        "proc", "self", "root", "tmp", "\x00", "/proc/self/root", "/dev/fd/0", str(root), str(outside), "/",
    ]


def paths(root: Path, outside: Path) -> st.SearchStrategy[str]:
    # One draw per piece (segment and separator together) keeps 2,000 examples fast.
    pieces = [segment + sep for segment in segments_for(root, outside) for sep in ("/", "//", "")]
    return st.lists(st.sampled_from(pieces), min_size=1, max_size=8).map("".join)


def snapshot(directory: Path) -> dict[str, bytes | str]:
    """Every entry under `directory` with its content (files) or link target (symlinks)."""
    state: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(directory):
        for name in dirnames + filenames:
            full = Path(dirpath, name)
            rel = str(full.relative_to(directory))
            if full.is_symlink():
                state[rel] = "-> " + os.readlink(full)
            elif full.is_file():
                state[rel] = full.read_bytes()
            else:
                state[rel] = "dir"
    return state


def check_resolved(ws: Workspace, path: str, write: bool) -> bool:
    """Check one path; True when it was accepted."""
    try:
        real = ws.resolve(path, write=write)
    except WorkspaceError:
        return False
    root = str(ws.root)
    assert os.path.realpath(real) == str(real), "resolve must return a real path"
    assert os.path.commonpath([root, str(real)]) == root
    rel = ws.relative(real)
    assert not ws.rules.is_hidden(rel)
    if write:
        assert not ws.rules.is_read_only(rel)
        assert not real.is_dir()
    # Whatever the kernel opens for this path is the very file resolve named.
    named = path if path.startswith("/") else os.path.join(root, path)
    try:
        kernel_view = os.stat(named)
    except OSError:
        return True
    assert os.path.samestat(kernel_view, os.stat(real))
    return True


def test_segments_cover_every_kind_of_link(layout: tuple[Workspace, Path, Path]) -> None:
    ws, outside, _ = layout
    links = {p.name for p in ws.root.iterdir() if p.is_symlink()}
    assert links <= set(segments_for(ws.root, outside))


def test_resolve_never_leaves_the_workspace(layout: tuple[Workspace, Path, Path]) -> None:
    ws, outside, _ = layout
    outcomes: list[bool] = []

    @PROPERTY_SETTINGS
    @given(path=paths(ws.root, outside), write=st.booleans())
    def check(path: str, write: bool) -> None:
        outcomes.append(check_resolved(ws, path, write))

    check()
    # The property says something only if the generated paths hit both sides.
    assert outcomes.count(True) > 100 and outcomes.count(False) > 100


def test_writes_never_touch_anything_outside(layout: tuple[Workspace, Path, Path]) -> None:
    ws, outside, base = layout
    before = snapshot(outside)
    neighbours = sorted(p.name for p in base.iterdir())
    written: list[str] = []

    @PROPERTY_SETTINGS
    @given(path=paths(ws.root, outside), content=st.sampled_from(["pwned\n", "x", "line\r\nline\r\n"]))
    def check(path: str, content: str) -> None:
        try:
            summary = apply_change(ws, plan_write(ws, path, content))
        except WorkspaceError:
            pass
        else:
            written.append(path)
            assert summary.startswith(("created ", "wrote "))
            assert ws.resolve(path).read_text(encoding="utf-8").replace("\r\n", "\n") == content.replace("\r\n", "\n")
        assert snapshot(outside) == before
        assert sorted(p.name for p in base.iterdir()) == neighbours

    check()
    assert len(written) > 100
