"""Reading a session log back: the fast JSON path keeps what json kept (escaped lone surrogates) and its errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import SessionError
from core.events import Notice, UserMessage
from core.session_log import SessionStore


def test_a_lone_surrogate_written_escaped_reads_back_exactly(state_dir: Path, workspace: Path) -> None:
    store = SessionStore(state_dir)
    with store.create(workspace=workspace, model=None) as log:
        log.append(UserMessage(text="plain ✓"))
        log.append(Notice(message="file name \udcff.txt"))
    events = store.open(log.id).read_events()
    assert [getattr(event, "text", getattr(event, "message", None)) for event in events] == [
        "plain ✓", "file name \udcff.txt"]


def test_a_line_that_is_not_json_is_named_with_the_json_error(state_dir: Path, workspace: Path) -> None:
    store = SessionStore(state_dir)
    with store.create(workspace=workspace, model=None) as log:
        log.append(UserMessage(text="one"))
    with log.events_path.open("ab") as handle:
        handle.write(b'{"seq": 2, "type": \n{"seq": 3}\n')
    with pytest.raises(SessionError, match=r"line 2 is not a valid event \(not JSON: Expecting value"):
        store.open(log.id).read_events()
