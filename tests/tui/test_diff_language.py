"""The diff pane's language lookup agrees with Pygments' own file-name matching, without its first-call cost."""

from __future__ import annotations

import pytest
from pygments.lexers import get_lexer_for_filename
from pygments.util import ClassNotFound

from tui.widgets.diff_render import _lexer_patterns, language_for


def pygments_says(path: str) -> str:
    try:
        lexer = get_lexer_for_filename(path)
    except ClassNotFound:
        return "text"
    return lexer.aliases[0] if lexer.aliases else lexer.name


def test_every_unique_suffix_and_its_variants_match_pygments() -> None:
    suffixes, _ = _lexer_patterns()
    assert len(suffixes) > 300
    names = [name for suffix in suffixes
             for name in (f"x.{suffix}", f"dir/x.{suffix}", f"X.{suffix.upper()}", f"a.b/x.{suffix}")]
    wrong = [(name, language_for(name), pygments_says(name)) for name in names
             if language_for(name) != pygments_says(name)]
    assert wrong == []


@pytest.mark.parametrize("path", ["Makefile", "Dockerfile", "CMakeLists.txt", "Makefile.am", "x", "dir.d/file",
                                  "x.h", "x.txt", "x.m", "x.pl", "x.v", "x.tar.gz", "src/calc.py", ".bashrc",
                                  "nginx.conf", "x.Rd", "x.rd", "PKGBUILD", "go.mod", "x.yml"])
def test_special_names_match_pygments(path: str) -> None:
    assert language_for(path) == pygments_says(path)
