"""Cutting streamed Markdown into pieces: nothing lost, fences balanced in every piece, sizes bounded."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tui.widgets.md_segments import split_pieces

LIMIT = 60


def fence_lines(text: str) -> list[int]:
    return [i for i, line in enumerate(text.split("\n")) if line.lstrip(" ")[:3] in ("```", "~~~")]


def open_fence_at_end(text: str) -> bool:
    """Whether a piece, rendered alone, would end inside a code block (a simple CommonMark fence tracker)."""
    marker = ""
    for line in text.split("\n"):
        stripped = line.lstrip(" ")
        if len(line) - len(stripped) > 3 or stripped[:3] not in ("```", "~~~"):
            continue
        run = len(stripped) - len(stripped.lstrip(stripped[0]))
        if not marker:
            if not (stripped[0] == "`" and "`" in stripped[run:]):
                marker = stripped[:run]
        elif stripped[0] == marker[0] and run >= len(marker) and not stripped[run:].strip():
            marker = ""
    return bool(marker)


def without_fence_lines(text: str) -> list[str]:
    return [line for line in text.split("\n") if line.lstrip(" ")[:3] not in ("```", "~~~")]


line = st.one_of(
    st.text(alphabet="ab #*-", max_size=30),
    st.just(""),
    st.sampled_from(["```", "```python", "~~~", "~~~~ text", "````", "   ```", "    ```", "``` x ` y"]),
)


@settings(max_examples=2000, deadline=None)
@given(st.lists(line, max_size=60), st.booleans())
def test_pieces_lose_nothing_and_keep_fences_balanced(lines: list[str], trailing_newline: bool) -> None:
    source = "\n".join(lines) + ("\n" if trailing_newline else "")
    pieces, rest = split_pieces(source, LIMIT)
    joined = "".join(pieces) + rest
    assert without_fence_lines(joined) == without_fence_lines(source), "only fence lines are ever added"
    for piece in pieces:
        assert piece.endswith("\n"), "pieces end at a line end"
        assert not open_fence_at_end(piece), "no piece ends inside a code block"
    if not pieces:
        assert rest == source


def test_prefers_blank_lines_then_line_ends() -> None:
    pieces, rest = split_pieces("para one\nstill one\n\npara two\nstill two\n", 30)
    assert pieces == ["para one\nstill one\n\n"] and rest == "para two\nstill two\n"
    pieces, rest = split_pieces("a long paragraph\nwith soft line\nbreaks only\n", 20)
    assert pieces == ["a long paragraph\n", "with soft line\n"] and rest == "breaks only\n"


def test_a_short_code_block_is_waited_for_and_a_long_one_is_cut_and_reopened() -> None:
    short = "intro\n```py\nx = 1\ny = 2\n```\nafter"
    assert split_pieces(short, 14) == (["intro\n", "```py\nx = 1\ny = 2\n```\n"], "after")
    long = "```py\n" + "".join(f"v{i} = {i}\n" for i in range(30)) + "```\n"
    pieces, _ = split_pieces(long, 40)
    assert len(pieces) > 3
    assert all(p.startswith("```py\n") and p.endswith("```\n") for p in pieces)


def test_text_without_line_ends_is_left_whole() -> None:
    assert split_pieces("x" * 500, 40) == ([], "x" * 500)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 400), st.integers(10, 200))
def test_pieces_stay_near_the_limit(lines: int, limit: int) -> None:
    source = "".join(f"line {i}\n" for i in range(lines))
    pieces, rest = split_pieces(source, limit)
    assert all(len(p) <= limit for p in pieces)
    assert len(rest) <= limit
    assert "".join(pieces) + rest == source
