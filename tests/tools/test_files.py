"""The file tools: what the model reads back from reads, listings, searches, planned edits and applied changes."""

from __future__ import annotations

import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from core.errors import WorkspaceError
from tools.files import (
    FileChange,
    apply_change,
    list_dir,
    plan_edit,
    plan_write,
    read_file,
    search_files,
)
from tools.workspace import Workspace


@pytest.fixture
def ws(workspace: Path) -> Workspace:
    (workspace / "src").mkdir()
    (workspace / "src" / "app.py").write_text("import os\n\n\ndef main():\n    print('hi')\n")
    return Workspace(workspace)


def refused(call, *args, **kwargs) -> str:
    with pytest.raises(WorkspaceError) as info:
        call(*args, **kwargs)
    return str(info.value)


# read_file

def test_read_whole_file_has_header_and_raw_text(ws: Workspace) -> None:
    assert read_file(ws, "src/app.py") == (
        "src/app.py (lines 1-5 of 5)\nimport os\n\n\ndef main():\n    print('hi')\n")


def test_read_line_range(ws: Workspace) -> None:
    assert read_file(ws, "src/app.py", start_line=4, end_line=5) == (
        "src/app.py (lines 4-5 of 5)\ndef main():\n    print('hi')\n")
    assert read_file(ws, "src/app.py", start_line=5) == "src/app.py (lines 5-5 of 5)\n    print('hi')\n"
    assert read_file(ws, "src/app.py", end_line=1) == "src/app.py (lines 1-1 of 5)\nimport os\n"
    # An end past the last line is clamped.
    assert read_file(ws, "src/app.py", start_line=5, end_line=99).startswith("src/app.py (lines 5-5 of 5)")


def test_read_bad_ranges_are_explained(ws: Workspace) -> None:
    assert refused(read_file, ws, "src/app.py", start_line=9) == (
        "read_file: 'src/app.py' has 5 lines; start_line=9 is past the end, use a start_line from 1 to 5")
    assert refused(read_file, ws, "src/app.py", start_line=4, end_line=2) == (
        "read_file: end_line (2) is before start_line (4); give a range with start_line <= end_line")
    assert refused(read_file, ws, "src/app.py", start_line=0) == (
        "read_file: start_line is 1-based; use start_line=1 for the first line of 'src/app.py'")
    assert refused(read_file, ws, "src/app.py", end_line=0).startswith("read_file: end_line is 1-based")


def test_read_keeps_crlf_and_missing_final_newline(ws: Workspace) -> None:
    (ws.root / "win.txt").write_bytes(b"one\r\ntwo")
    assert read_file(ws, "win.txt") == "win.txt (lines 1-2 of 2)\none\r\ntwo"


def test_read_empty_file(ws: Workspace) -> None:
    (ws.root / "empty.txt").write_text("")
    assert read_file(ws, "empty.txt") == "empty.txt (empty file, 0 lines)"


def test_read_truncates_at_2000_lines(ws: Workspace) -> None:
    (ws.root / "big.txt").write_text("".join(f"line {n}\n" for n in range(1, 9001)))
    out = read_file(ws, "big.txt")
    assert out.startswith("big.txt (lines 1-2000 of 9000)\nline 1\n")
    assert out.endswith("line 2000\n[truncated: showed lines 1-2000 of 9000; call read_file with "
                        "start_line=2001 to read on]")
    following = read_file(ws, "big.txt", start_line=2001)
    assert following.startswith("big.txt (lines 2001-4000 of 9000)\nline 2001\n")


def test_read_truncates_at_200_kb(ws: Workspace) -> None:
    line = "x" * 999 + "\n"
    (ws.root / "wide.txt").write_text(line * 300)
    out = read_file(ws, "wide.txt")
    assert out.startswith("wide.txt (lines 1-200 of 300)\n")
    assert out.endswith("[truncated: showed lines 1-200 of 300; call read_file with start_line=201 to read on]")
    assert out.count(line) == 200


def test_read_cuts_a_single_huge_line(ws: Workspace) -> None:
    (ws.root / "min.js").write_text("a" * 300_000 + "\nnext\n")
    out = read_file(ws, "min.js")
    assert out.startswith("min.js (lines 1-1 of 2)\n" + "a" * 200_000 + "\n[truncated: line 1 is 300,001 bytes")
    assert out.endswith("use search_files to find text inside it, or call read_file with start_line=2 to read on]")


def test_read_refuses_binary_files(ws: Workspace) -> None:
    (ws.root / "img.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0" + b"x" * 12_335)
    assert refused(read_file, ws, "img.png") == (
        "read_file: 'img.png' is a binary file (12,345 bytes); it cannot be shown as text")
    (ws.root / "latin1.txt").write_bytes(b"ok\nd\xe9j\xe0 vu\n")
    assert refused(read_file, ws, "latin1.txt") == (
        "read_file: 'latin1.txt' is a binary file (11 bytes); it cannot be shown as text")


def test_read_directory_and_missing_file(ws: Workspace) -> None:
    assert refused(read_file, ws, "src") == (
        "read_file: 'src' is a directory; call list_dir with path='src' to see what it contains")
    assert refused(read_file, ws, "src/nope.py") == (
        "read_file: 'src/nope.py' does not exist; call list_dir or search_files to find the right path")


def test_read_refuses_hidden_and_outside(ws: Workspace) -> None:
    (ws.root / ".env").write_text("TOKEN=x\n")
    assert refused(read_file, ws, ".env") == (
        "path '.env' is hidden by the workspace policy (paths.yaml); it cannot be read or written")
    assert "is outside the workspace" in refused(read_file, ws, "/etc/passwd")


# list_dir

def test_list_dir_sorted_with_sizes_and_hidden_count(ws: Workspace) -> None:
    root = ws.root
    (root / "b.txt").write_text("12345")
    (root / "a.md").write_text("")
    (root / ".env").write_text("K=1\n")
    (root / "key.pem").write_text("-----\n")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref\n")
    (root / "docs").symlink_to("src")
    (root / "escape").symlink_to("/etc")
    assert list_dir(ws) == "\n".join([
        "./ (3 directories, 2 files)",
        ".git/ (read-only)",
        "a.md (0 bytes)",
        "b.txt (5 bytes)",
        "docs/ -> src/",
        "escape (symlink that cannot be used: it leads outside the workspace or to a hidden path)",
        "src/",
        "[2 entries hidden by the workspace policy (paths.yaml) not shown]",
    ])


def test_list_dir_subdirectory_and_git(ws: Workspace) -> None:
    assert list_dir(ws, "src") == "src/ (0 directories, 1 file)\napp.py (40 bytes)"
    (ws.root / ".git").mkdir()
    (ws.root / ".git" / "HEAD").write_text("ref\n")
    assert list_dir(ws, ".git") == ".git/ (0 directories, 1 file)\nHEAD (4 bytes) (read-only)"


def test_list_dir_empty_missing_and_file(ws: Workspace) -> None:
    (ws.root / "empty").mkdir()
    assert list_dir(ws, "empty") == "empty/ is empty"
    assert refused(list_dir, ws, "src/nope") == (
        "list_dir: 'src/nope' does not exist; call list_dir with path='src' to see what is there")
    assert refused(list_dir, ws, "src/app.py") == (
        "list_dir: 'src/app.py' is a file (40 bytes); call read_file to read it")


def test_list_dir_caps_at_500_entries(ws: Workspace) -> None:
    many = ws.root / "many"
    many.mkdir()
    for n in range(612):
        (many / f"f{n:04d}").write_text("")
    out = list_dir(ws, "many").split("\n")
    assert out[0] == "many/ (0 directories, 612 files)"
    assert out[1] == "f0000 (0 bytes)"
    assert len(out) == 502
    assert out[-1] == ("[showing 500 of 612 entries; call list_dir on a subdirectory or use search_files "
                       "with a glob]")


# search_files

def test_search_finds_lines_with_numbers(ws: Workspace) -> None:
    (ws.root / "src" / "util.py").write_text("def helper():\n    return 1\n")
    assert search_files(ws, r"def \w+\(") == "src/app.py:4: def main():\nsrc/util.py:1: def helper():"
    assert search_files(ws, "print", path="src/app.py") == "src/app.py:5:     print('hi')"


def test_search_glob_uses_workspace_glob_rules(ws: Workspace) -> None:
    (ws.root / "notes.md").write_text("def in markdown\n")
    assert search_files(ws, "def", glob="*.md") == "notes.md:1: def in markdown"
    assert search_files(ws, "def", glob="src/**/*.py") == "src/app.py:4: def main():"
    assert search_files(ws, "def", glob="*.rs") == "no matches for pattern 'def' in '.' (files matching glob '*.rs')"


def test_search_skips_hidden_git_binary_large_and_symlinks(ws: Workspace) -> None:
    root = ws.root
    (root / ".env").write_text("needle\n")
    (root / "conf").mkdir()
    (root / "conf" / "tls.pem").write_text("needle\n")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("needle\n")
    (root / "blob.bin").write_bytes(b"needle\0\n")
    (root / "huge.txt").write_text("needle\n" + "x" * 2_100_000)
    (root / "link.txt").symlink_to("src/app.py")
    (root / "out").symlink_to("/etc")
    (root / "keep.txt").write_text("a needle here\n")
    assert search_files(ws, "needle") == "keep.txt:1: a needle here"


def test_search_cuts_long_lines(ws: Workspace) -> None:
    (ws.root / "long.txt").write_text("needle" + "y" * 500 + "\n")
    assert search_files(ws, "needle") == "long.txt:1: needle" + "y" * 294 + " [line cut]"


def test_search_caps_at_200_matches(ws: Workspace) -> None:
    (ws.root / "many.txt").write_text("hit\n" * 250)
    out = search_files(ws, "hit").split("\n")
    assert len(out) == 201
    assert out[199] == "many.txt:200: hit"
    assert out[200] == "[200 matches shown; narrow the pattern or the path]"


def test_search_invalid_regex_and_no_matches(ws: Workspace) -> None:
    assert refused(search_files, ws, "foo(") == (
        "search_files: invalid regular expression 'foo(': missing ), unterminated subpattern at position 3; "
        "fix it (escape special characters such as ( [ . * + ? with a backslash) and search again")
    assert search_files(ws, "absent", path="src") == "no matches for pattern 'absent' in 'src'"
    assert refused(search_files, ws, "x", path="nope") == (
        "search_files: 'nope' does not exist; call list_dir to find the right path")
    assert "is hidden" in refused(search_files, ws, "x", path=".env")


# plan_write / apply_change

def test_plan_write_new_file_then_apply(ws: Workspace) -> None:
    change = plan_write(ws, "notes/todo.txt", "one\ntwo\n")
    assert change == FileChange(path="notes/todo.txt", old=None, new="one\ntwo\n", created=True,
                                diff="--- /dev/null\n+++ b/notes/todo.txt\n@@ -0,0 +1,2 @@\n+one\n+two\n")
    assert not (ws.root / "notes").exists()
    assert apply_change(ws, change) == "created notes/todo.txt (2 lines)"
    assert (ws.root / "notes" / "todo.txt").read_text() == "one\ntwo\n"


def test_plan_write_existing_file_shows_diff(ws: Workspace) -> None:
    change = plan_write(ws, "src/app.py", "import os\n\n\ndef main():\n    print('bye')\n    return 0\n")
    assert change.diff == (
        "--- a/src/app.py\n+++ b/src/app.py\n@@ -2,4 +2,5 @@\n \n \n def main():\n"
        "-    print('hi')\n+    print('bye')\n+    return 0\n")
    assert not change.created
    assert apply_change(ws, change) == "wrote src/app.py (+2 -1 lines)"


def test_diff_marks_missing_final_newline(ws: Workspace) -> None:
    change = plan_write(ws, "x.txt", "no newline")
    assert change.diff == "--- /dev/null\n+++ b/x.txt\n@@ -0,0 +1 @@\n+no newline\n\\ No newline at end of file\n"


def test_plan_write_refusals(ws: Workspace) -> None:
    assert refused(plan_write, ws, "src/app.py", (ws.root / "src" / "app.py").read_text()) == (
        "write_file: 'src/app.py' already has exactly this content; nothing to write")
    assert refused(plan_write, ws, "src", "x") == (
        "path 'src' is a directory; writing needs a file path such as 'src/new_file.txt'")
    assert refused(plan_write, ws, ".git/hooks/pre-commit", "x") == (
        "path '.git/hooks/pre-commit' is read-only by the workspace policy (paths.yaml); it can be read but "
        "not written")
    assert refused(plan_write, ws, ".env", "x").startswith("path '.env' is hidden")
    assert refused(plan_write, ws, "src/app.py/inner/x.txt", "x") == (
        "write_file: cannot create 'src/app.py/inner/x.txt': 'src/app.py' is a file, not a directory; "
        "choose another path")
    (ws.root / "logo.png").write_bytes(b"\0" * 10)
    assert refused(plan_write, ws, "logo.png", "text") == (
        "write_file: 'logo.png' is a binary file (10 bytes); it cannot be edited as text")


def test_plan_write_keeps_crlf_of_existing_file(ws: Workspace) -> None:
    (ws.root / "win.txt").write_bytes(b"a\r\nb\r\n")
    change = plan_write(ws, "win.txt", "a\nc\n")
    apply_change(ws, change)
    assert (ws.root / "win.txt").read_bytes() == b"a\r\nc\r\n"


def test_apply_refuses_when_file_changed_since_planned(ws: Workspace) -> None:
    change = plan_edit(ws, "src/app.py", "print('hi')", "print('bye')")
    (ws.root / "src" / "app.py").write_text("changed by someone else\n")
    assert refused(apply_change, ws, change) == (
        "'src/app.py' changed since this edit was prepared; read it again and redo the edit")
    assert (ws.root / "src" / "app.py").read_text() == "changed by someone else\n"
    created = plan_write(ws, "fresh.txt", "mine\n")
    (ws.root / "fresh.txt").write_text("theirs\n")
    assert "changed since this edit was prepared" in refused(apply_change, ws, created)
    assert (ws.root / "fresh.txt").read_text() == "theirs\n"


def test_apply_rechecks_the_path(ws: Workspace, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    change = plan_write(ws, "gen/out.txt", "data\n")
    # Between approval and apply, gen/ became a link to the outside.
    (ws.root / "gen").symlink_to(outside)
    assert "leads outside the workspace" in refused(apply_change, ws, change)
    assert list(outside.iterdir()) == []


def test_apply_keeps_mode_and_leaves_no_temp_files(ws: Workspace) -> None:
    script = ws.root / "run.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    apply_change(ws, plan_edit(ws, "run.sh", "echo hi", "echo bye"))
    assert script.read_text() == "#!/bin/sh\necho bye\n"
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    assert sorted(os.listdir(ws.root)) == ["run.sh", "src"]


def test_apply_through_inside_symlink_writes_target(ws: Workspace) -> None:
    (ws.root / "main.py").symlink_to("src/app.py")
    change = plan_edit(ws, "main.py", "print('hi')", "print('via link')")
    assert change.path == "src/app.py"
    apply_change(ws, change)
    assert (ws.root / "main.py").is_symlink()
    assert "print('via link')" in (ws.root / "src" / "app.py").read_text()


# plan_edit

def test_plan_edit_replaces_once_and_shows_diff(ws: Workspace) -> None:
    change = plan_edit(ws, "src/app.py", "    print('hi')\n", "    print('hi')\n    return 0\n")
    assert change.old == (ws.root / "src" / "app.py").read_text()
    assert change.new.endswith("    print('hi')\n    return 0\n")
    assert change.diff == (
        "--- a/src/app.py\n+++ b/src/app.py\n@@ -3,3 +3,4 @@\n \n def main():\n     print('hi')\n+    return 0\n")
    assert apply_change(ws, change) == "wrote src/app.py (+1 -0 lines)"


def test_plan_edit_ambiguous_and_replace_all(ws: Workspace) -> None:
    (ws.root / "dup.py").write_text("x = 1\ny = 2\nx = 1\nz = 3\nx = 1\n")
    assert refused(plan_edit, ws, "dup.py", "x = 1", "x = 9") == (
        "edit_file: old_text occurs 3 times in 'dup.py' (at lines 1, 3, 5); add surrounding lines to old_text "
        "so it matches exactly one place, or set replace_all=true to replace every occurrence")
    change = plan_edit(ws, "dup.py", "x = 1", "x = 9", replace_all=True)
    assert change.new == "x = 9\ny = 2\nx = 9\nz = 3\nx = 9\n"
    assert plan_edit(ws, "dup.py", "y = 2\nx = 1", "y = 2\nx = 5").new == "x = 1\ny = 2\nx = 5\nz = 3\nx = 1\n"


def test_plan_edit_simple_refusals(ws: Workspace) -> None:
    assert refused(plan_edit, ws, "src/new.py", "a", "b") == (
        "edit_file: 'src/new.py' does not exist; use write_file to create it")
    assert refused(plan_edit, ws, "src/app.py", "", "b") == (
        "edit_file: old_text is empty; copy the exact text to replace from read_file, or use write_file to "
        "write the whole file")
    assert refused(plan_edit, ws, "src/app.py", "import os", "import os") == (
        "edit_file: old_text and new_text are identical; nothing would change")
    assert refused(plan_edit, ws, "src", "a", "b") == (
        "path 'src' is a directory; writing needs a file path such as 'src/new_file.txt'")
    (ws.root / "data.bin").write_bytes(b"\xff\xfe\x00abc")
    assert refused(plan_edit, ws, "data.bin", "abc", "x") == (
        "edit_file: 'data.bin' is a binary file (6 bytes); it cannot be edited as text")


def test_plan_edit_not_found_points_at_whitespace_difference(ws: Workspace) -> None:
    assert refused(plan_edit, ws, "src/app.py", "def main():\n  print('hi')", "x") == "\n".join([
        "edit_file: old_text was not found in 'src/app.py'.",
        "The same text with different whitespace or indentation is at lines 4-5 (line numbers added, not part "
        "of the file):",
        "4: def main():",
        "5:     print('hi')",
        "Copy old_text exactly as it appears there, including spaces, tabs and blank lines.",
        "Call read_file on 'src/app.py' again and copy old_text exactly from it.",
    ])


def test_plan_edit_not_found_shows_closest_lines(ws: Workspace) -> None:
    assert refused(plan_edit, ws, "src/app.py", "def mian():\n    print('hello')\n", "x") == "\n".join([
        "edit_file: old_text was not found in 'src/app.py'.",
        "The closest lines in the file are (line numbers added, not part of the file):",
        "4: def main():",
        "5:     print('hi')",
        "Call read_file on 'src/app.py' again and copy old_text exactly from it.",
    ])
    assert refused(plan_edit, ws, "src/app.py", "zzzzzzzzzzzzzzzzzzzzzzzzzzzz", "x") == "\n".join([
        "edit_file: old_text was not found in 'src/app.py'.",
        "Nothing in the file resembles it; the file may have changed.",
        "Call read_file on 'src/app.py' again and copy old_text exactly from it.",
    ])


def test_plan_edit_keeps_crlf(ws: Workspace) -> None:
    (ws.root / "win.cs").write_bytes(b"class A\r\n{\r\n    int x;\r\n}\r\n")
    change = plan_edit(ws, "win.cs", "{\n    int x;\n", "{\n    int x;\n    int y;\n")
    apply_change(ws, change)
    assert (ws.root / "win.cs").read_bytes() == b"class A\r\n{\r\n    int x;\r\n    int y;\r\n}\r\n"


def test_plan_edit_crlf_old_text_on_lf_file(ws: Workspace) -> None:
    change = plan_edit(ws, "src/app.py", "def main():\r\n    print('hi')", "def main():\r\n    pass")
    assert change.new.endswith("def main():\n    pass\n")
    assert "\r" not in change.new


def test_plan_edit_finds_closest_lines_in_a_large_file_quickly(ws: Workspace) -> None:
    body = "".join(f"value_{n} = compute({n}, factor={n % 7})\n" for n in range(20_000))
    (ws.root / "big.py").write_text(body)
    message = refused(plan_edit, ws, "big.py", "value_12345 = compute(12345, factor=99)", "x")
    assert "12346: value_12345 = compute(12345, factor=4)" in message


def test_edit_then_read_round_trip(ws: Workspace) -> None:
    apply_change(ws, plan_edit(ws, "src/app.py", "print('hi')", "print('round trip')"))
    assert "    print('round trip')\n" in read_file(ws, "src/app.py")


def test_frozen_change_cannot_be_mutated(ws: Workspace) -> None:
    change = plan_write(ws, "a.txt", "x\n")
    with pytest.raises(AttributeError):
        change.new = "y"  # type: ignore[misc]
    # A change forged with the wrong `old` is refused, never written.
    forged = replace(change, old="something else")
    assert "changed since" in refused(apply_change, ws, forged)
    assert not (ws.root / "a.txt").exists()
