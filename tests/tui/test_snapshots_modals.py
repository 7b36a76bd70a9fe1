"""Snapshots of the approval modal (write, command) and the session picker at fixed sizes and a fixed clock."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from core.events import ApprovalRequested
from tests.tui.test_approval_screen import ApprovalHost, command_request
from tests.tui.test_session_picker import PickerHost, make_picker
from tui.screens.approval_screen import ApprovalScreen

SnapCompare = Callable[..., bool]

SNAPSHOT_DIFF = "\n".join(
    [
        "diff --git a/src/app.py b/src/app.py",
        "--- a/src/app.py",
        "+++ b/src/app.py",
        "@@ -1,14 +1,22 @@",
        ' """Command-line entry point."""',
        " ",
        "-import os",
        "+import argparse",
        "+import json",
        " import sys",
        " ",
        " ",
        "-def main():",
        "-    name = os.environ.get('NAME', 'world')",
        "-    print('hello ' + name)",
        "-    return 0",
        "+def parse_args(argv: list[str]) -> argparse.Namespace:",
        '+    parser = argparse.ArgumentParser(prog="app")',
        '+    parser.add_argument("--json", action="store_true", help="print JSON")',
        '+    parser.add_argument("name", nargs="?", default="world")',
        "+    return parser.parse_args(argv)",
        "+",
        "+",
        "+def main(argv: list[str] | None = None) -> int:",
        "+    args = parse_args(sys.argv[1:] if argv is None else argv)",
        "+    if args.json:",
        '+        print(json.dumps({"greeting": f"hello {args.name}"}))',
        "+    else:",
        '+        print(f"hello {args.name}")',
        "+    return 0",
        " ",
        " ",
        ' if __name__ == "__main__":',
        "     sys.exit(main())",
        "@@ -40,3 +48,4 @@ def helper():",
        "     return value",
        "+# keep the helper private",
        " ",
        " # end of file",
        "",
    ]
)


async def steady_cursors(pilot: Pilot[None], *keys: str) -> None:
    """Press `keys`, then stop every input's cursor blinking (it stays lit).

    A blinking cursor is lit or not depending on when the screenshot is taken: on a loaded machine the
    snapshot came out without it (CI failed on the picker's filter box).
    """
    await pilot.press(*keys)
    for box in pilot.app.screen.query(Input):
        box.cursor_blink = False
    await pilot.pause()


async def settle(pilot: Pilot[None]) -> None:
    await steady_cursors(pilot)


def write_request() -> ApprovalRequested:
    return ApprovalRequested(
        call_id="call-1",
        tool="write_file",
        arguments='{"path": "src/app.py"}',
        kind="write",
        diff=SNAPSHOT_DIFF,
        reason="writes need approval in ask mode",
    )


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Dates in the picker come out the same on every machine."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_write_approval_120x40(snap_compare: SnapCompare) -> None:
    app = ApprovalHost(ApprovalScreen(write_request(), queued=2, rule_text="writes to src/**"))
    assert snap_compare(app, terminal_size=(120, 40), run_before=settle)


def test_write_approval_80x24(snap_compare: SnapCompare) -> None:
    app = ApprovalHost(ApprovalScreen(write_request(), queued=1, rule_text="writes to src/**"))
    assert snap_compare(app, terminal_size=(80, 24), run_before=settle)


async def type_reason(pilot: Pilot[None]) -> None:
    await steady_cursors(pilot, "n", *"use pathlib")


def test_write_approval_reason_open_80x24(snap_compare: SnapCompare) -> None:
    app = ApprovalHost(ApprovalScreen(write_request(), rule_text="writes to src/**"))
    assert snap_compare(app, terminal_size=(80, 24), run_before=type_reason)


def test_command_approval_120x40(snap_compare: SnapCompare) -> None:
    app = ApprovalHost(ApprovalScreen(command_request(), queued=0, rule_text="commands starting with 'npm test'"))
    assert snap_compare(app, terminal_size=(120, 40), run_before=settle)


def test_session_picker_120x40(snap_compare: SnapCompare, utc: Any) -> None:
    assert snap_compare(PickerHost(make_picker()), terminal_size=(120, 40), run_before=settle)


def test_session_picker_80x24_leaves_out_the_model(snap_compare: SnapCompare, utc: Any) -> None:
    assert snap_compare(PickerHost(make_picker()), terminal_size=(80, 24), run_before=settle)
