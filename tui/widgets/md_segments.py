"""Cutting a long Markdown source into pieces that render on their own as the whole would.

A streamed answer is shown as a run of finished pieces plus one live tail, so that no single widget (and no
single frame) has to lay out the whole answer. Cuts go, by preference, at a blank line outside a code fence
(a block boundary: the pieces render exactly as the whole), else at a line end outside a fence (a paragraph
is split in two), else at a line end inside a fence, which is then closed at the end of one piece and opened
again, with the same info string, at the start of the next.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class _Fence:
    marker: str  # the run of ` or ~ that opened it
    opening: str  # the whole opening line, without its line end


def _fence_change(line: str, fence: _Fence | None) -> _Fence | None:
    """The fence state after `line` (CommonMark: up to three spaces, then three or more ` or ~)."""
    stripped = line.lstrip(" ")
    if len(line) - len(stripped) > 3 or stripped[:3] not in ("```", "~~~"):
        return fence
    char = stripped[0]
    run = len(stripped) - len(stripped.lstrip(char))
    if fence is None:
        if char == "`" and "`" in stripped[run:]:
            return None  # not a fence: a backtick info string may not contain backticks
        return _Fence(marker=char * run, opening=line)
    if char == fence.marker[0] and run >= len(fence.marker) and not stripped[run:].strip():
        return None
    return fence


def split_pieces(source: str, limit: int) -> tuple[list[str], str]:
    """Finished pieces of about `limit` characters each, and the rest (shorter than `limit`, or uncuttable).

    Joining the pieces and the rest gives `source` back, except that a fence cut in two gains a closing line
    at the end of one piece and its opening line again at the start of the next.
    """
    pieces: list[str] = []
    while len(source) > limit:
        cut, fence = _best_cut(source, limit)
        if cut <= 0:
            break
        head, source = source[:cut], source[cut:]
        if fence is not None:
            head += fence.marker + "\n"
            source = fence.opening + "\n" + source
        pieces.append(head)
    return pieces, source


def _best_cut(source: str, limit: int) -> tuple[int, _Fence | None]:
    """Where to cut (an index just after a line end), and the fence open there; 0 when nothing fits.

    A code block open at the limit is waited for, up to twice the limit, so that it is cut only when long.
    """
    fence: _Fence | None = None
    block = soft = fenced = 0
    fenced_state: _Fence | None = None
    start = 0
    while (end := source.find("\n", start)) >= 0:
        line = source[start:end]
        before, fence = fence, _fence_change(line, fence)
        after = end + 1
        start = after
        if after > limit and (block or soft or fenced):
            if block or soft:
                break
            if fence is None:  # the code block closed: cut after it rather than inside it
                soft = after
                break
            if after > 2 * limit:
                break
            continue
        if fence is None:
            if not line.strip() and after < len(source):
                block = after
            soft = after
        elif before is fence:  # inside a fence, not on its opening line: cutting here must shrink the rest
            fenced, fenced_state = after, fence
        if after > limit:
            break  # the first line end past the limit: no earlier one would do
    if block:
        return block, None
    if soft:
        return soft, None
    return fenced, fenced_state
