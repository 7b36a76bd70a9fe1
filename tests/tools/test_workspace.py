"""Workspace confinement: every refusal with the exact message the model receives, and atomic writes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from core.errors import WorkspaceError
from core.policy_types import PathRules
from tools.workspace import Workspace, atomic_write


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Workspace, Path]:
    """A workspace with a file, a subdirectory, and an outside directory next to it."""
    root = tmp_path / "ws"
    (root / "src").mkdir(parents=True)
    (root / "src" / "app.py").write_text("print('hi')\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret\n")
    return Workspace(root), outside


def refusal(ws: Workspace, path: str, *, write: bool = False) -> str:
    with pytest.raises(WorkspaceError) as info:
        ws.resolve(path, write=write)
    return str(info.value)


def test_root_is_the_real_path(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "alias").symlink_to(real)
    ws = Workspace(tmp_path / "alias")
    assert ws.root == real.resolve()
    # The root as configured (a symlink) is still accepted as a prefix of absolute paths.
    assert ws.resolve(str(tmp_path / "alias" / "x.txt")) == real.resolve() / "x.txt"


def test_root_must_be_a_directory(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError, match="is not an existing directory"):
        Workspace(tmp_path / "missing")


def test_relative_and_inside_absolute_paths_resolve(layout: tuple[Workspace, Path]) -> None:
    ws, _ = layout
    app = ws.root / "src" / "app.py"
    assert ws.resolve("src/app.py") == app
    assert ws.resolve("./src//app.py") == app
    assert ws.resolve(f"{ws.root}/src/app.py") == app
    assert ws.resolve(f"/{ws.root}//src/app.py") == app
    assert ws.resolve("src/../src/app.py") == app
    assert ws.resolve(".") == ws.root
    assert ws.resolve(str(ws.root)) == ws.root
    assert ws.resolve("src/new/file.txt") == ws.root / "src" / "new" / "file.txt"
    assert ws.relative(app) == "src/app.py"
    assert ws.relative(ws.root) == "."


def test_tilde_is_not_expanded(layout: tuple[Workspace, Path]) -> None:
    ws, _ = layout
    assert ws.resolve("~x") == ws.root / "~x"
    assert ws.resolve("~/notes") == ws.root / "~" / "notes"


def test_dot_dot_escape_is_refused(layout: tuple[Workspace, Path]) -> None:
    ws, _ = layout
    assert refusal(ws, "../etc/passwd") == (
        f"path '../etc/passwd' is outside the workspace; use a path relative to the workspace root ({ws.root})")
    # Leaving and coming back is refused too: the path is judged as written.
    assert "is outside the workspace" in refusal(ws, f"../{ws.root.name}/src/app.py")
    assert "is outside the workspace" in refusal(ws, f"{ws.root}/../outside/secret.txt")


def test_absolute_path_outside_is_refused(layout: tuple[Workspace, Path]) -> None:
    ws, outside = layout
    assert refusal(ws, "/etc/passwd") == (
        f"path '/etc/passwd' is outside the workspace; use a path relative to the workspace root ({ws.root})")
    assert "is outside the workspace" in refusal(ws, str(outside / "secret.txt"))
    # A sibling whose name starts with the root's name is not inside it.
    assert "is outside the workspace" in refusal(ws, f"{ws.root}-other/x")


def test_nul_byte_and_empty_path_are_refused(layout: tuple[Workspace, Path]) -> None:
    ws, _ = layout
    assert refusal(ws, "src/app.py\x00.txt") == (
        "path contains a NUL byte; use a plain path relative to the workspace root, such as 'src/app.py'")
    assert refusal(ws, "") == (
        f"path is empty; use a path relative to the workspace root ({ws.root}), or '.' for the root itself")
    assert refusal(ws, "  ").startswith("path is empty")


def test_symlink_file_leading_outside_is_refused(layout: tuple[Workspace, Path]) -> None:
    ws, outside = layout
    (ws.root / "leak.txt").symlink_to(outside / "secret.txt")
    assert refusal(ws, "leak.txt") == (
        "path 'leak.txt' leads outside the workspace through a symlink; use a path whose real location is "
        f"inside the workspace root ({ws.root})")


def test_symlink_parent_leading_outside_is_refused(layout: tuple[Workspace, Path]) -> None:
    ws, outside = layout
    (ws.root / "src" / "vendor").symlink_to(outside)
    assert "leads outside the workspace through a symlink" in refusal(ws, "src/vendor/secret.txt")
    # Also for files that do not exist yet: their nearest existing ancestor is outside.
    assert "leads outside the workspace through a symlink" in refusal(ws, "src/vendor/new/file.txt", write=True)
    # A relative link that climbs out, and a dangling link to an outside path.
    (ws.root / "up").symlink_to("../outside")
    assert "leads outside" in refusal(ws, "up/secret.txt")
    (ws.root / "dangling").symlink_to(outside / "not-yet.txt")
    assert "leads outside" in refusal(ws, "dangling", write=True)


def test_dot_dot_after_a_symlink_is_taken_from_its_target(layout: tuple[Workspace, Path]) -> None:
    ws, outside = layout
    deep = outside / "deep"
    deep.mkdir()
    (ws.root / "d").symlink_to(deep)
    # Lexically 'd/../src/app.py' is inside; the kernel resolves '..' from the link's target: outside.
    assert "leads outside" in refusal(ws, "d/../secret.txt")


def test_symlinks_inside_are_followed(layout: tuple[Workspace, Path]) -> None:
    ws, _ = layout
    (ws.root / "code").symlink_to("src")
    (ws.root / "abs_link").symlink_to(ws.root / "src" / "app.py")
    assert ws.resolve("code/app.py") == ws.root / "src" / "app.py"
    assert ws.resolve("abs_link") == ws.root / "src" / "app.py"
    (ws.root / "src" / "up").symlink_to("..")
    assert ws.resolve("src/up/src/up/src/app.py") == ws.root / "src" / "app.py"


def test_symlink_loop_is_refused(layout: tuple[Workspace, Path]) -> None:
    ws, _ = layout
    (ws.root / "ping").symlink_to("pong")
    (ws.root / "pong").symlink_to("ping")
    (ws.root / "self").symlink_to("self")
    assert refusal(ws, "ping/x") == (
        "path 'ping/x' cannot be resolved: it goes through a symlink loop; use a path that does not go "
        "through that symlink")
    assert "symlink loop" in refusal(ws, "self")


@pytest.mark.parametrize("target", ["/proc/self/root", "/proc/self/cwd", "/dev/fd", "/proc/1/root", "/proc"])
def test_links_into_proc_are_refused(layout: tuple[Workspace, Path], target: str) -> None:
    ws, _ = layout
    (ws.root / "magic").symlink_to(target)
    # Even where the link's text points back into the workspace, /proc's magic links cannot be trusted.
    inner = f"magic{ws.root}/src/app.py" if target.endswith("root") else "magic/x"
    assert refusal(ws, inner) == (
        f"path '{inner}' goes through /proc (like /proc/self/root or /dev/fd), which is never allowed; "
        f"use a path inside the workspace root ({ws.root})")


def test_proc_absolute_paths_are_refused(layout: tuple[Workspace, Path]) -> None:
    ws, _ = layout
    for path in (f"/proc/self/root{ws.root}/src/app.py", "/proc/self/cwd/x", "/dev/fd/3", "/dev/stdin"):
        assert "is outside the workspace" in refusal(ws, path)


def test_proc_is_refused_even_with_root_at_slash() -> None:
    ws = Workspace(Path("/"))
    assert "goes through /proc" in refusal(ws, "/proc/self/environ")
    assert "goes through /proc" in refusal(ws, "dev/fd/0")


def test_hidden_paths_are_refused(layout: tuple[Workspace, Path]) -> None:
    ws, _ = layout
    (ws.root / ".env").write_text("KEY=1\n")
    assert refusal(ws, ".env") == (
        "path '.env' is hidden by the workspace policy (paths.yaml); it cannot be read or written")
    assert "is hidden" in refusal(ws, "config/.env.local")
    assert "is hidden" in refusal(ws, "certs/server.pem", write=True)
    assert "is hidden" in refusal(ws, f"{ws.root}/.env")
    assert "is hidden" in refusal(ws, "src/../.env")


def test_symlink_inside_pointing_at_hidden_path_is_refused(layout: tuple[Workspace, Path]) -> None:
    ws, _ = layout
    (ws.root / ".env").write_text("KEY=1\n")
    (ws.root / "settings.txt").symlink_to(".env")
    assert refusal(ws, "settings.txt") == (
        "path 'settings.txt' leads to '.env', which is hidden by the workspace policy (paths.yaml); "
        "it cannot be read or written")


def test_read_only_paths_refuse_writes_only(layout: tuple[Workspace, Path]) -> None:
    ws, _ = layout
    (ws.root / ".git").mkdir()
    (ws.root / ".git" / "config").write_text("[core]\n")
    assert ws.resolve(".git/config") == ws.root / ".git" / "config"
    assert refusal(ws, ".git/config", write=True) == (
        "path '.git/config' is read-only by the workspace policy (paths.yaml); it can be read but not written")
    (ws.root / "gitconf").symlink_to(".git/config")
    assert refusal(ws, "gitconf", write=True) == (
        "path 'gitconf' leads to '.git/config', which is read-only by the workspace policy (paths.yaml); "
        "it can be read but not written")


def test_custom_rules_are_used(tmp_path: Path) -> None:
    ws = Workspace(tmp_path, PathRules(read_only=("vendor/**",), hidden=("*.key",)))
    assert "is hidden" in refusal(ws, "a/b/id.key")
    assert "read-only" in refusal(ws, "vendor/lib.py", write=True)
    assert ws.resolve(".env") == tmp_path.resolve() / ".env"


def test_writing_to_a_directory_is_refused(layout: tuple[Workspace, Path]) -> None:
    ws, _ = layout
    assert refusal(ws, "src", write=True) == (
        "path 'src' is a directory; writing needs a file path such as 'src/new_file.txt'")
    assert refusal(ws, ".", write=True) == (
        "path '.' is a directory; writing needs a file path such as 'new_file.txt'")


def test_write_text_creates_parents_inside(layout: tuple[Workspace, Path]) -> None:
    ws, _ = layout
    real = ws.write_text("docs/guide/intro.md", "# Intro\n")
    assert real == ws.root / "docs" / "guide" / "intro.md"
    assert real.read_text() == "# Intro\n"


def test_write_through_inside_symlink_writes_the_target(layout: tuple[Workspace, Path]) -> None:
    ws, _ = layout
    link = ws.root / "main.py"
    link.symlink_to("src/app.py")
    ws.write_text("main.py", "print('bye')\n")
    assert link.is_symlink()
    assert (ws.root / "src" / "app.py").read_text() == "print('bye')\n"


def test_write_through_outside_symlink_changes_nothing(layout: tuple[Workspace, Path]) -> None:
    ws, outside = layout
    (ws.root / "leak.txt").symlink_to(outside / "secret.txt")
    (ws.root / "out").symlink_to(outside)
    with pytest.raises(WorkspaceError, match="leads outside"):
        ws.write_text("leak.txt", "pwned\n")
    with pytest.raises(WorkspaceError, match="leads outside"):
        ws.write_text("out/new/file.txt", "pwned\n")
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == "secret\n"


def test_write_to_a_hard_link_leaves_the_other_name_alone(layout: tuple[Workspace, Path]) -> None:
    ws, outside = layout
    os.link(outside / "secret.txt", ws.root / "hard.txt")
    ws.write_text("hard.txt", "replaced\n")
    assert (ws.root / "hard.txt").read_text() == "replaced\n"
    assert (outside / "secret.txt").read_text() == "secret\n"


def test_write_text_refuses_a_file_in_place_of_a_parent(layout: tuple[Workspace, Path]) -> None:
    ws, _ = layout
    with pytest.raises(WorkspaceError) as info:
        ws.write_text("src/app.py/inner.txt", "x")
    assert str(info.value).startswith("cannot write 'src/app.py/inner.txt': 'src/app.py' is not a directory")


def test_directory_swapped_for_symlink_after_resolve_is_not_followed(layout: tuple[Workspace, Path]) -> None:
    ws, outside = layout
    real = ws.resolve("src/secret.txt")
    # A concurrent process replaces src/ with a link to the outside after the check.
    (ws.root / "src").rename(ws.root / "src.old")
    (ws.root / "src").symlink_to(outside)
    with pytest.raises(WorkspaceError, match="'src' is not a directory inside the workspace"):
        ws.open_binary(real)


def test_file_swapped_for_symlink_after_resolve_is_not_followed(layout: tuple[Workspace, Path]) -> None:
    ws, outside = layout
    real = ws.resolve("src/app.py")
    (ws.root / "src" / "app.py").unlink()
    (ws.root / "src" / "app.py").symlink_to(outside / "secret.txt")
    with pytest.raises(WorkspaceError, match=r"cannot read 'src/app\.py'"):
        ws.open_binary(real)


def test_open_binary_refuses_a_fifo_without_blocking(layout: tuple[Workspace, Path]) -> None:
    ws, _ = layout
    os.mkfifo(ws.root / "pipe")
    with pytest.raises(WorkspaceError) as info:
        ws.open_binary(ws.resolve("pipe"))
    assert str(info.value) == "'pipe' is not a regular file (a device, socket or pipe); it cannot be read"


def test_atomic_write_keeps_mode_and_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "run.sh"
    target.write_text("old\n")
    target.chmod(0o751)
    atomic_write(target, "new\n")
    assert target.read_text() == "new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o751
    atomic_write(target, b"bytes\n")
    assert target.read_bytes() == b"bytes\n"
    assert [p.name for p in tmp_path.iterdir()] == ["run.sh"]


def test_atomic_write_new_file_mode_follows_umask(tmp_path: Path) -> None:
    old_umask = os.umask(0o027)
    try:
        atomic_write(tmp_path / "new.txt", "x")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o640


def test_atomic_write_replaces_a_symlink_instead_of_following_it(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep\n")
    (tmp_path / "link").symlink_to(victim)
    atomic_write(tmp_path / "link", "new\n")
    assert victim.read_text() == "keep\n"
    assert not (tmp_path / "link").is_symlink()
    assert (tmp_path / "link").read_text() == "new\n"


def test_failed_write_leaves_no_temp_file_and_keeps_the_original(layout: tuple[Workspace, Path]) -> None:
    ws, _ = layout
    # The resolved path became a directory before the rename: the write fails cleanly.
    real = ws.resolve("later.txt", write=True)
    real.mkdir()
    with pytest.raises(IsADirectoryError):
        atomic_write(real, "x")
    assert sorted(p.name for p in ws.root.iterdir()) == ["later.txt", "src"]
