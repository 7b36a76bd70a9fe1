"""Render a unified diff as syntax-highlighted Textual content with old/new line numbers per hunk."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache

from textual.content import Content

HUNK_HEADER = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
FILE_HEADERS = ("diff ", "index ", "--- ", "+++ ", "new file mode", "deleted file mode", "similarity ", "rename ")

GUTTER_STYLE = "$text-muted"
HEADER_STYLE = "bold $text-primary"
HUNK_STYLE = "$text-accent"
ADDED_STYLE = "on $success-muted"
REMOVED_STYLE = "on $error-muted"
ADDED_MARK_STYLE = "bold $text-success"
REMOVED_MARK_STYLE = "bold $text-error"


@dataclass
class _Hunk:
    """The body lines of one hunk: (marker, old number, new number, code)."""

    language: str
    lines: list[tuple[str, int | None, int | None, str]] = field(default_factory=list)


def language_for(path: str) -> str:
    """The Pygments language name for a file path ("text" when unknown)."""
    name = path.rpartition("/")[2]
    suffixes, other_patterns = _lexer_patterns()
    if "." in name and not other_patterns.match(name):
        alias = suffixes.get(name.rpartition(".")[2])
        if alias is not None:
            return alias
    # Pygments is imported with the first diff, not before the app's first frame.
    from pygments.lexers import get_lexer_for_filename
    from pygments.util import ClassNotFound

    try:
        lexer = get_lexer_for_filename(path)
    except ClassNotFound:
        return "text"
    return lexer.aliases[0] if lexer.aliases else lexer.name


@cache
def _lexer_patterns() -> tuple[dict[str, str], re.Pattern[str]]:
    """`*.ext` patterns that exactly one lexer claims (to its first alias), and every other pattern as one regex.

    `get_lexer_for_filename` matches the path against every lexer's patterns (~0.2 s the first time, paid when
    a resumed session shows its last diff); a name that only a one-lexer `*.ext` pattern matches needs none.
    """
    from fnmatch import translate

    from pygments.lexers._mapping import LEXERS

    owners: dict[str, set[str]] = {}
    others: list[str] = []
    for _module, lexer_name, aliases, filenames, _mimetypes in LEXERS.values():
        for pattern in filenames:
            if pattern.startswith("*.") and not any(c in pattern[2:] for c in "*?[]."):
                owners.setdefault(pattern[2:], set()).add(aliases[0] if aliases else lexer_name)
            else:
                others.append(pattern)
    suffixes = {suffix: next(iter(names)) for suffix, names in owners.items() if len(names) == 1}
    return suffixes, re.compile("|".join(translate(p) for p in others) or "(?!)")


def _path_from_header(line: str) -> str | None:
    name = line[4:].split("\t", 1)[0].strip()
    if name == "/dev/null":
        return None
    return name[2:] if name.startswith(("a/", "b/")) else name


def _parse(diff: str) -> list[str | _Hunk]:
    """Split a diff into header lines (str) and hunks, tracking line numbers and each file's language.

    A hunk's extent comes from the counts in its header, so a removed line that looks like a header
    (``--- x``) is still read as code.
    """
    items: list[str | _Hunk] = []
    language = "text"
    hunk: _Hunk | None = None
    old_no = new_no = old_left = new_left = 0
    # Split on newlines only: str.splitlines() also splits on form feeds and other separators found in source.
    lines = [line.removesuffix("\r") for line in diff.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    for line in lines:
        if hunk is not None and line.startswith("\\"):
            hunk.lines.append(("\\", None, None, line))
            continue
        if hunk is not None and (old_left > 0 or new_left > 0):
            marker, code = (line[:1] or " "), line[1:]
            if marker == "-":
                hunk.lines.append(("-", old_no, None, code))
                old_no, old_left = old_no + 1, old_left - 1
            elif marker == "+":
                hunk.lines.append(("+", None, new_no, code))
                new_no, new_left = new_no + 1, new_left - 1
            else:
                hunk.lines.append((" ", old_no, new_no, code))
                old_no, new_no, old_left, new_left = old_no + 1, new_no + 1, old_left - 1, new_left - 1
            continue
        hunk = None
        match = HUNK_HEADER.match(line)
        if match:
            old_no, new_no = int(match.group(1)), int(match.group(3))
            old_left = int(match.group(2)) if match.group(2) is not None else 1
            new_left = int(match.group(4)) if match.group(4) is not None else 1
            hunk = _Hunk(language)
            items.extend((line, hunk))
            continue
        if line.startswith(("+++ ", "--- ")):
            path = _path_from_header(line)
            if path is not None:
                language = language_for(path)
        items.append(line)
    return items


def _number_width(items: list[str | _Hunk]) -> int:
    biggest = 1
    for item in items:
        if isinstance(item, _Hunk):
            for _, old, new, _ in item.lines:
                biggest = max(biggest, old or 0, new or 0)
    return len(str(biggest))


def _render_hunk(hunk: _Hunk, width: int) -> list[Content]:
    from textual.highlight import highlight

    code_lines = [code for marker, _, _, code in hunk.lines if marker != "\\"]
    highlighted = highlight("\n".join(code_lines), language=hunk.language, tab_size=4).split("\n", allow_blank=True)
    if len(highlighted) != len(code_lines):
        # The highlighter re-splits lines (form feeds, exotic line separators): keep the code plain but aligned.
        highlighted = [Content(code) for code in code_lines]
    rendered: list[Content] = []
    index = 0
    for marker, old, new, code in hunk.lines:
        if marker == "\\":
            rendered.append(Content.styled(f"{'':>{width}} {'':>{width}}   {code}", GUTTER_STYLE))
            continue
        body = highlighted[index]
        index += 1
        gutter = Content.styled(
            f"{'' if old is None else old:>{width}} {'' if new is None else new:>{width}} ", GUTTER_STYLE
        )
        if marker == "+":
            line = Content.assemble(gutter, Content.styled("+ ", ADDED_MARK_STYLE), body).stylize_before(ADDED_STYLE)
        elif marker == "-":
            line = Content.assemble(gutter, Content.styled("- ", REMOVED_MARK_STYLE), body)
            line = line.stylize_before(REMOVED_STYLE)
        else:
            line = Content.assemble(gutter, "  ", body)
        rendered.append(line)
    return rendered


def render_diff(diff: str) -> Content:
    """Render a unified diff: file headers, hunk headers, and highlighted lines with old and new line numbers.

    The result is Textual ``Content`` (a visual for ``Static`` and friends) styled with theme variables, so it
    follows the app's theme.
    """
    items = _parse(diff)
    width = _number_width(items)
    lines: list[Content] = []
    for item in items:
        if isinstance(item, _Hunk):
            lines.extend(_render_hunk(item, width))
        elif HUNK_HEADER.match(item):
            lines.append(Content.styled(item, HUNK_STYLE))
        elif item.startswith(FILE_HEADERS):
            lines.append(Content.styled(item, HEADER_STYLE))
        else:
            lines.append(Content(item))
    return Content("\n").join(lines)
