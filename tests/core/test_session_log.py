"""The session journal survives SIGKILL, lists every session (broken ones marked), repairs, forks and exports."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core import session_log as session_log_module
from core.errors import SessionError
from core.events import (
    ApprovalDecided,
    ApprovalRequested,
    AssistantDelta,
    AssistantMessage,
    ErrorEvent,
    Event,
    Notice,
    PlanStep,
    PlanUpdated,
    RunFinished,
    RunStarted,
    SessionStarted,
    ToolCallFinished,
    ToolCallRequested,
    UserMessage,
)
from core.session_log import META_EVERY_EVENTS, SessionLog, SessionMeta, SessionStore, make_title

ROOT = Path(__file__).resolve().parents[2]

# A second process: "append" writes events forever (printing each seq once append returned);
# "hold" records a run start, says "ready" and waits for stdin to close.
CHILD = """
import sys
from pathlib import Path
from core.events import AssistantDelta, RunStarted, ToolCallFinished
from core.session_log import SessionStore

log = SessionStore(Path(sys.argv[1])).open(sys.argv[2])
if sys.argv[3] == "hold":
    log.append(RunStarted(run_id="r1", goal="hold"))
    print("ready", flush=True)
    sys.stdin.read()
else:
    i = 0
    while True:
        i += 1
        if i % 7 == 0:
            event = RunStarted(run_id=str(i), goal="g")  # writes meta too: kills land inside meta writes as well
        elif i % 5 == 0:
            event = ToolCallFinished(call_id=str(i), tool="run_command", ok=True, output_preview="y" * (i * 131 % 9000))
        else:
            event = AssistantDelta(message_id="m", text="x" * (i * 7919 % 20000))
        print(log.append(event).seq, flush=True)
"""


def spawn(state_dir: Path, session_id: str, mode: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", CHILD, str(state_dir), session_id, mode], cwd=ROOT, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def sigkill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for stream in (proc.stdin, proc.stdout):
        if stream:
            stream.close()


def dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    return int(proc.stdout)


def disk_meta(log: SessionLog) -> SessionMeta:
    return SessionMeta.model_validate_json((log.dir / "meta.json").read_bytes())


def assert_valid_jsonl(path: Path) -> list[dict]:
    raw = path.read_bytes()
    assert raw.endswith(b"\n")
    return [json.loads(line) for line in raw.splitlines()]


@pytest.fixture
def store(state_dir: Path) -> SessionStore:
    return SessionStore(state_dir)


def new_session(store: SessionStore, workspace: Path, goal: str = "fix the tests") -> SessionLog:
    log = store.create(workspace=workspace, model="qwen", base_url="http://host:1234/v1", client="cli")
    log.append(SessionStarted(session_id=log.id, workspace=str(workspace), model="qwen"))
    log.append(UserMessage(text=goal))
    return log


# ---------------------------------------------------------------------- append and read

def test_reading_events_leaves_the_cyclic_collector_as_it_was(store: SessionStore, workspace: Path) -> None:
    import gc

    log = new_session(store, workspace)
    log.append(AssistantDelta(message_id="m", text="x"))
    try:
        assert len(log.read_events()) == 3 and gc.isenabled()
        gc.disable()
        assert len(log.read_events()) == 3 and not gc.isenabled()
        gc.enable()
        with log.events_path.open("ab") as handle:
            handle.write(b"not json\n")
        with pytest.raises(SessionError):
            log.read_events()
        assert gc.isenabled()
    finally:
        gc.enable()
    log.close()


def test_append_assigns_seq_and_ts_and_reads_back(store: SessionStore, workspace: Path) -> None:
    log = store.create(workspace=workspace, model="qwen")
    before = time.time()
    recorded = [log.append(e) for e in (UserMessage(text="hi"), AssistantDelta(message_id="m", text="é\u2028x"),
                                        Event(type="from_a_newer_version", extra_field=[1, 2]))]
    after = time.time()
    assert [e.seq for e in recorded] == [1, 2, 3]
    assert all(before <= e.ts <= after for e in recorded)
    back = log.read_events()
    assert [e.to_json() for e in back] == [e.to_json() for e in recorded]
    assert isinstance(back[0], UserMessage) and back[1].text == "é\u2028x"
    assert back[2].extra_field == [1, 2]
    assert [e.seq for e in log.iter_events()] == [1, 2, 3]
    assert len(assert_valid_jsonl(log.events_path)) == 3
    log.close()


def record_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """From now on, the name of every file fsynced, in order."""
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    return synced


def test_append_fsyncs_the_log_before_returning(store: SessionStore, workspace: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    log = new_session(store, workspace)
    synced = record_fsyncs(monkeypatch)
    log.append(Notice(message="ordinary event: the log only"))
    assert synced == ["events.jsonl"]
    synced.clear()
    log.append(RunStarted(run_id="r", goal="g"))  # status change: meta follows at once
    assert synced[0] == "events.jsonl" and "meta.json" not in synced  # meta is fsynced as its temp file
    assert any(name.startswith(".meta.json.") for name in synced)
    log.close()


def test_streamed_fragments_are_written_at_once_and_fsynced_at_most_every_delta_sync_seconds(
        store: SessionStore, workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = new_session(store, workspace)
    synced = record_fsyncs(monkeypatch)
    monkeypatch.setattr(session_log_module, "DELTA_SYNC_SECONDS", 3600.0)
    log.append(Notice(message="synced"))
    synced.clear()
    for n in range(20):
        log.append(AssistantDelta(message_id="m", text=f"fragment {n} "))
    assert synced == [], "fragments soon after an fsync wait for the next"
    # Written all the same: another process (a resume after a kill) reads every one of them.
    assert sum(isinstance(e, AssistantDelta) for e in store.open(log.id).read_events()) == 20
    monkeypatch.setattr(session_log_module, "DELTA_SYNC_SECONDS", 0.0)
    log.append(AssistantDelta(message_id="m", text="late fragment"))
    assert len(synced) == 1, "a fragment DELTA_SYNC_SECONDS after the last fsync is fsynced"
    monkeypatch.setattr(session_log_module, "DELTA_SYNC_SECONDS", 3600.0)
    log.append(AssistantDelta(message_id="m", text="pending"))
    log.append(AssistantMessage(message_id="m", text="the whole message"))
    assert len(synced) == 2, "any other event fsyncs at once, and with it every fragment before it"
    log.append(AssistantDelta(message_id="m2", text="pending at close"))
    log.close()
    assert len(synced) >= 3, "close() fsyncs what is pending"


def test_meta_never_counts_fragments_that_are_not_fsynced(store: SessionStore, workspace: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    log = new_session(store, workspace)
    log.append(Notice(message="synced"))
    order = record_fsyncs(monkeypatch)
    monkeypatch.setattr(session_log_module, "DELTA_SYNC_SECONDS", 3600.0)
    for n in range(META_EVERY_EVENTS):
        log.append(AssistantDelta(message_id="m", text=f"{n} "))
    meta_at = next(i for i, name in enumerate(order) if name.startswith(".meta.json."))
    assert "events.jsonl" in order[:meta_at], "the log is fsynced before meta says how long it is"
    log.close()


def test_sigkill_at_random_points_never_loses_an_acknowledged_event(store: SessionStore, workspace: Path,
                                                                    state_dir: Path) -> None:
    log = store.create(workspace=workspace, model="qwen")
    rng = random.Random(20261121)
    acknowledged = 0
    for _trial in range(6):
        proc = spawn(state_dir, log.id, "append")
        assert proc.stdout is not None
        target = rng.randint(1, 40)
        seen = 0
        for line in proc.stdout:
            seen = int(line)
            if seen >= acknowledged + target:
                break
        sigkill(proc)
        acknowledged = seen
        events = store.open(log.id).read_events()
        seqs = [e.seq for e in events]
        assert seqs == list(range(1, len(seqs) + 1))  # no gap, no duplicate, across every restart
        assert seqs[-1] >= acknowledged  # everything append() returned is on disk
        raw = log.events_path.read_bytes()
        complete, _, _torn = raw.rpartition(b"\n")
        assert len(complete.splitlines()) == len(events)  # at most the last line is torn
    survivor = store.open(log.id)
    last = survivor.append(UserMessage(text="after the crashes"))
    assert last.seq == len(events) + 1
    assert [e["seq"] for e in assert_valid_jsonl(log.events_path)] == list(range(1, last.seq + 1))
    assert survivor.meta.event_count == last.seq and survivor.meta.last_seq == last.seq
    assert not [p.name for p in log.dir.iterdir() if p.name.endswith(".tmp")]  # dead writers' temps are swept
    survivor.close()


def test_torn_last_line_is_ignored_then_cut_on_next_append(store: SessionStore, workspace: Path) -> None:
    log = new_session(store, workspace)
    log.close()
    with log.events_path.open("ab") as handle:
        handle.write(b'{"seq":3,"ts":1.0,"type":"user_mes')
    reopened = store.open(log.id)
    assert [e.seq for e in reopened.read_events()] == [1, 2]
    recorded = reopened.append(UserMessage(text="next"))
    assert recorded.seq == 3
    assert [e["seq"] for e in assert_valid_jsonl(log.events_path)] == [1, 2, 3]
    assert (log.dir / "events.jsonl.torn").read_bytes() == b'{"seq":3,"ts":1.0,"type":"user_mes\n'
    reopened.close()


def test_corrupt_middle_line_raises_naming_the_line(store: SessionStore, workspace: Path) -> None:
    log = new_session(store, workspace)
    log.close()
    lines = log.events_path.read_bytes().splitlines(keepends=True)
    log.events_path.write_bytes(lines[0] + b"{not json\n" + lines[1])
    with pytest.raises(SessionError, match=r"line 2 is not a valid event") as err:
        log.read_events()
    assert f"agent sessions repair {log.id}" in err.value.hint


def test_meta_lagging_after_a_crash_is_rebuilt_on_next_append(store: SessionStore, workspace: Path) -> None:
    log = new_session(store, workspace)
    for i in range(10):
        log.append(AssistantDelta(message_id="m", text=str(i)))
    assert disk_meta(log).event_count == 2  # ordinary events do not rewrite meta each time
    log.release()  # the process "dies": no close(), meta stays behind the log
    reopened = store.open(log.id)
    assert reopened.append(UserMessage(text="again")).seq == 13
    assert reopened.meta.event_count == 13 and reopened.meta.title == "fix the tests"
    reopened.close()
    assert disk_meta(reopened).event_count == 13


# ---------------------------------------------------------------------- meta

def test_meta_follows_status_events_and_is_written_at_once(store: SessionStore, workspace: Path) -> None:
    log = store.create(workspace=workspace, model=None, approval_mode="ask")
    assert disk_meta(log).status == "new" and disk_meta(log).title == ""
    # (event, status after it, pending approvals, whether meta.json is rewritten at once)
    steps: list[tuple[Event, str, int, bool]] = [
        (SessionStarted(session_id=log.id, workspace=str(workspace), model="qwen-7b"), "new", 0, True),
        (UserMessage(text="  \nRefactor the parser\nsecond line"), "new", 0, True),
        (RunStarted(run_id="r1", goal="Refactor the parser", approval_mode="auto-edit"), "running", 0, True),
        (ApprovalRequested(call_id="c1", tool="write_file", arguments="{}"), "paused", 1, True),
        (ApprovalRequested(call_id="c2", tool="run_command", arguments="{}"), "paused", 2, True),
        (ApprovalDecided(call_id="c1", decision="approve"), "paused", 1, True),
        (ApprovalDecided(call_id="c2", decision="reject"), "running", 0, True),
        (ErrorEvent(message="rate limited", recoverable=True), "running", 0, False),
        (RunFinished(run_id="r1", status="done"), "done", 0, True),
        (UserMessage(text="now the docs"), "done", 0, False),
        (RunStarted(run_id="r2", goal="now the docs"), "running", 0, True),
        (RunFinished(run_id="r2", status="max_turns"), "failed", 0, True),
        (RunStarted(run_id="r3", goal="x"), "running", 0, True),
        (ErrorEvent(message="endpoint gone", recoverable=False), "failed", 0, True),
        (RunStarted(run_id="r4", goal="x", approval_mode="full-auto"), "running", 0, True),
        (ApprovalRequested(call_id="c3", tool="write_file", arguments="{}"), "paused", 1, True),
        (RunFinished(run_id="r4", status="paused"), "paused", 1, True),
    ]
    for event, status, pending, written in steps:
        log.append(event)
        assert (log.meta.status, log.meta.pending_approvals) == (status, pending), event.type
        assert (disk_meta(log) == log.meta) is written, event.type
    meta = log.meta
    assert meta.title == "Refactor the parser" and meta.goal == "Refactor the parser\nsecond line"
    assert meta.model == "qwen-7b" and meta.approval_mode == "full-auto"
    assert meta.updated == log.read_events()[-1].ts and meta.last_seq == meta.event_count == len(steps)
    log.close()


def test_meta_refresh_is_batched_by_count_and_time_and_flushed_on_close(store: SessionStore,
                                                                        workspace: Path) -> None:
    log = new_session(store, workspace)
    for i in range(META_EVERY_EVENTS - 1):
        log.append(AssistantDelta(message_id="m", text=str(i)))
    assert disk_meta(log).event_count == 2
    log.append(AssistantDelta(message_id="m", text="50th"))
    assert disk_meta(log).event_count == 2 + META_EVERY_EVENTS
    log.append(AssistantDelta(message_id="m", text="one more"))
    assert disk_meta(log).event_count == 2 + META_EVERY_EVENTS
    log._meta_written_at -= session_log_module.META_EVERY_SECONDS  # as if 2 s had passed since the last write
    log.append(AssistantDelta(message_id="m", text="later"))
    assert disk_meta(log).event_count == 4 + META_EVERY_EVENTS
    log.append(AssistantDelta(message_id="m", text="last"))
    log.close()
    assert disk_meta(log).event_count == 5 + META_EVERY_EVENTS


def test_meta_writes_are_atomic_and_leave_no_temp_files(store: SessionStore, workspace: Path) -> None:
    log = new_session(store, workspace)
    for i in range(30):
        log.update_meta(approval_mode="full-auto" if i % 2 else "ask", client=f"tui-{i}")
    log.save_run_state('{"paused": true}')
    assert log.load_run_state() == '{"paused": true}'
    log.close()
    assert sorted(p.name for p in log.dir.iterdir()) == ["events.jsonl", "meta.json", "run_state.json"]
    assert disk_meta(log).client == "tui-29"
    log.clear_run_state()
    assert log.load_run_state() is None
    log.clear_run_state()


def test_update_meta_refuses_unknown_fields_and_keeps_secrets_out(store: SessionStore, workspace: Path) -> None:
    log = store.create(workspace=workspace, model="m", base_url="https://user:s3cret@api.example.com:8443/v1?key=abc")
    assert log.meta.base_url == "https://api.example.com:8443/v1"
    with pytest.raises(SessionError, match="api_key") as err:
        log.update_meta(api_key="sk-123")
    assert "approval_mode" in err.value.hint
    with pytest.raises(SessionError, match="id"):
        log.update_meta(id="other")
    log.update_meta(base_url="http://u:p@localhost:1234/v1")
    text = (log.dir / "meta.json").read_text()
    assert "s3cret" not in text and "sk-123" not in text and ":p@" not in text
    assert set(json.loads(text)) == set(SessionMeta.model_fields)


def test_title_is_one_line_of_at_most_80_chars() -> None:
    title = make_title("\n\n   " + "word " * 40 + "\nmore")
    assert len(title) <= 80 and "\n" not in title and title.endswith("…")
    assert make_title("short goal") == "short goal"


# ---------------------------------------------------------------------- list, latest, open

def test_list_shows_every_session_newest_first_and_marks_broken_and_foreign(store: SessionStore, workspace: Path,
                                                                             tmp_path: Path) -> None:
    other_ws = tmp_path / "elsewhere"
    other_ws.mkdir()
    healthy = []
    for i in range(12):
        log = new_session(store, workspace, goal=f"goal {i}")
        log.close()
        healthy.append(log.id)
    foreign = new_session(store, other_ws, goal="other project")
    foreign.close()
    corrupt = new_session(store, workspace, goal="corrupt meta")
    corrupt.close()
    (corrupt.dir / "meta.json").write_text('{"id": "x", "status": "exploded"')
    no_meta = new_session(store, workspace, goal="lost meta")
    no_meta.close()
    (no_meta.dir / "meta.json").unlink()
    no_events = store.create(workspace=workspace, model="m")
    no_events.events_path.unlink()
    (store.root / "20200101-000000-abcdef").mkdir()  # an empty directory is a (broken) session too
    (store.root / "stray-file.txt").write_text("not a session")

    rows = store.list(workspace)
    by_id = {row.id: row for row in rows}
    assert len(rows) == 17
    assert [r.updated for r in rows] == sorted((r.updated for r in rows), reverse=True)
    assert all(not by_id[i].broken and by_id[i].status == "new" for i in healthy)
    assert by_id[healthy[3]].title == "goal 3" and by_id[healthy[3]].event_count == 2
    assert by_id[foreign.id].other_workspace and not by_id[foreign.id].broken
    assert not any(by_id[i].other_workspace for i in healthy)
    assert by_id[corrupt.id].broken and "meta.json is corrupt" in by_id[corrupt.id].problem
    assert by_id[no_meta.id].broken and "meta.json is missing" in by_id[no_meta.id].problem
    assert by_id[no_events.id].broken and "events.jsonl is missing" in by_id[no_events.id].problem
    assert by_id["20200101-000000-abcdef"].status == "broken"
    assert all("agent sessions repair" in r.problem for r in rows if r.broken)
    assert len(store.list()) == 17 and not any(r.other_workspace for r in store.list())


def test_list_reads_meta_not_logs(store: SessionStore, workspace: Path) -> None:
    log = new_session(store, workspace)
    log.close()
    with log.events_path.open("ab") as handle:
        handle.write(b"garbage that only a log reader would trip over\n")
    (row,) = store.list(workspace)
    assert not row.broken and row.title == "fix the tests"


def test_running_session_of_a_killed_process_is_interrupted_and_its_lock_stolen(store: SessionStore,
                                                                                 workspace: Path,
                                                                                 state_dir: Path) -> None:
    log = new_session(store, workspace)
    log.close()
    proc = spawn(state_dir, log.id, "hold")
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    (row,) = store.list(workspace)
    assert (row.status, row.live) == ("running", True)
    mine = store.open(log.id)
    with pytest.raises(SessionError, match=rf"session {log.id} is open in process {proc.pid}"):
        mine.append(UserMessage(text="two writers"))
    with pytest.raises(SessionError, match=f"process {proc.pid}"):
        mine.acquire()
    assert store.repair(log.id) == [f"{log.id}: skipped: session {log.id} is open in process {proc.pid}"]
    sigkill(proc)
    (row,) = store.list(workspace)
    assert (row.status, row.live, row.meta and row.meta.status) == ("interrupted", False, "running")
    mine.acquire()  # the holder is dead: its lock is taken over
    assert (log.dir / "lock").read_text().split()[0] == str(os.getpid())
    assert mine.append(UserMessage(text="resumed")).seq == 4
    (row,) = store.list(workspace)
    assert (row.status, row.live) == ("running", True)
    mine.close()
    assert not (log.dir / "lock").exists()


def test_lock_with_a_dead_pid_is_stolen_and_a_second_writer_in_process_is_refused(store: SessionStore,
                                                                                   workspace: Path) -> None:
    log = new_session(store, workspace)
    log.append(RunStarted(run_id="r", goal="g"))
    log.close()
    (log.dir / "lock").write_text(f"{dead_pid()}\n")
    (row,) = store.list(workspace)
    assert row.status == "interrupted" and not row.live
    paused = new_session(store, workspace, goal="paused one")
    paused.append(ApprovalRequested(call_id="c", tool="write_file", arguments="{}"))
    paused.close()
    (paused.dir / "lock").write_text(f"{dead_pid()}\n")
    assert {r.id: r.status for r in store.list(workspace)}[paused.id] == "paused"  # paused stays paused

    first = store.open(log.id)
    first.acquire()
    second = store.open(log.id)
    with pytest.raises(SessionError, match=f"open in process {os.getpid()}"):
        second.append(UserMessage(text="x"))
    first.release()
    second.append(UserMessage(text="x"))
    second.close()


def test_latest_is_the_newest_readable_session_of_this_workspace(store: SessionStore, workspace: Path,
                                                                 tmp_path: Path) -> None:
    assert store.latest(workspace) is None
    older = new_session(store, workspace, goal="older")
    newest = new_session(store, workspace, goal="newest")
    newest.close()
    older.append(UserMessage(text="touch older last"))
    older.close()
    other = tmp_path / "other"
    other.mkdir()
    new_session(store, other, goal="foreign, newer").close()
    broken = new_session(store, workspace, goal="broken, newer")
    broken.close()
    (broken.dir / "meta.json").write_text("{")
    latest = store.latest(workspace)
    assert latest is not None and latest.id == older.id


def test_open_by_exact_id_or_unique_prefix_and_clear_errors(store: SessionStore, workspace: Path) -> None:
    a = store.create(workspace=workspace, model="m")
    b = store.create(workspace=workspace, model="m")
    assert store.open(a.id).id == a.id
    unique = next(n for n in range(len(a.id)) if a.id[:n] != b.id[:n])
    assert store.open(a.id[:unique]).id == a.id
    with pytest.raises(SessionError, match="matches 2 sessions") as err:
        store.open("20")
    assert a.id in str(err.value) and b.id in str(err.value) and "more characters" in err.value.hint
    with pytest.raises(SessionError, match="no session matches 'nope'") as err:
        store.open("nope")
    assert "agent sessions list --all" in err.value.hint
    with pytest.raises(SessionError, match="not a session id"):
        store.open("../etc")


def test_open_rebuilds_a_missing_meta_in_memory_and_writes_it_when_appending(store: SessionStore,
                                                                             workspace: Path) -> None:
    log = new_session(store, workspace, goal="keep me")
    log.close()
    (log.dir / "meta.json").unlink()
    reopened = store.open(log.id)
    assert reopened.meta.title == "keep me" and reopened.meta.event_count == 2
    assert not (log.dir / "meta.json").exists()  # opening to read writes nothing
    reopened.append(AssistantDelta(message_id="m", text="x"))
    assert disk_meta(reopened).title == "keep me"  # written as soon as we became the writer
    reopened.close()
    assert disk_meta(reopened).event_count == 3


# ---------------------------------------------------------------------- repair

def test_repair_moves_corrupt_lines_cuts_the_torn_tail_and_rebuilds_meta(store: SessionStore,
                                                                         workspace: Path) -> None:
    log = new_session(store, workspace, goal="repair me")
    log.append(RunStarted(run_id="r", goal="repair me"))
    log.append(AssistantMessage(message_id="m", text="working"))
    log.close()
    lines = log.events_path.read_bytes().splitlines(keepends=True)
    log.events_path.write_bytes(lines[0] + lines[1] + b'{"seq": 3, "type": oops}\n' + lines[2] + lines[3]
                                + b'{"seq":5,"ts":9')
    (log.dir / "meta.json").write_text("not json at all")

    report = store.repair(log.id[:12])
    text = "\n".join(report)
    assert all(line.startswith(f"{log.id}: ") for line in report)
    assert "line 3 moved to events.jsonl.corrupt-" in text and "torn last line (15 bytes)" in text
    assert "meta.json rebuilt from 4 events (meta.json is corrupt" in text
    assert [e["seq"] for e in assert_valid_jsonl(log.events_path)] == [1, 2, 3, 4]
    (corrupt,) = log.dir.glob("events.jsonl.corrupt-*")
    assert corrupt.read_bytes() == b'{"seq": 3, "type": oops}\n'
    assert (log.dir / "events.jsonl.torn").read_bytes() == b'{"seq":5,"ts":9\n'
    meta = disk_meta(log)
    assert (meta.id, meta.title, meta.event_count, meta.last_seq) == (log.id, "repair me", 4, 4)
    assert meta.status == "interrupted"  # it was running and nobody holds it
    assert meta.workspace == str(workspace) and meta.model == "qwen"
    assert store.repair(log.id) == [f"{log.id}: ok (4 events)"]
    assert store.open(log.id).append(UserMessage(text="go on")).seq == 5


def test_repair_all_reports_every_session(store: SessionStore, workspace: Path) -> None:
    assert store.repair() == [f"no sessions under {store.root}"]
    fine = new_session(store, workspace)
    fine.close()
    lagging = new_session(store, workspace)
    lagging.append(AssistantDelta(message_id="m", text="x"))
    lagging.release()
    lost_log = store.create(workspace=workspace, model="m")
    lost_log.events_path.unlink()
    (store.root / "20200101-000000-000000").mkdir()
    report = store.repair()
    assert f"{fine.id}: ok (2 events)" in report
    assert f"{lagging.id}: meta.json updated from the log (updated, event_count, last_seq)" in report
    assert any(line.startswith(f"{lost_log.id}: events.jsonl was missing: created an empty log") for line in report)
    assert any(line.startswith("20200101-000000-000000: cannot repair: no events.jsonl and meta.json is missing")
               for line in report)
    assert not next(r for r in store.list() if r.id == lost_log.id).broken


# ---------------------------------------------------------------------- fork

def test_fork_copies_events_up_to_seq_without_the_pending_run(store: SessionStore, workspace: Path) -> None:
    src = new_session(store, workspace, goal="original goal")
    src.append(RunStarted(run_id="r", goal="original goal"))
    src.append(AssistantMessage(message_id="m", text="step one"))
    src.append(ApprovalRequested(call_id="c", tool="write_file", arguments='{"path": "a.py"}'))
    src.append(RunFinished(run_id="r", status="paused"))
    src.save_run_state('{"state": "paused"}')
    src.close()

    mid = store.fork(src.id, at_seq=4)
    assert [e.to_json() for e in mid.read_events()] == [e.to_json() for e in src.read_events()[:4]]
    assert (mid.meta.forked_from, mid.meta.fork_seq, mid.meta.title) == (src.id, 4, "original goal")
    assert mid.meta.status == "interrupted" and mid.load_run_state() is None
    assert not mid.conversation_db.exists()
    assert mid.append(UserMessage(text="a different direction")).seq == 5
    mid.close()
    assert [e.seq for e in src.read_events()] == [1, 2, 3, 4, 5, 6]  # the source is untouched

    whole = store.fork(src.id)
    assert whole.meta.fork_seq == 6 and whole.meta.status == "paused" and whole.meta.pending_approvals == 1
    assert whole.load_run_state() == '{"state": "paused"}'  # a fork at the paused end keeps the approval
    assert disk_meta(whole) == whole.meta

    with pytest.raises(SessionError, match="has no event 99") as err:
        store.fork(src.id, at_seq=99)
    assert "between 1 and 6" in err.value.hint
    assert store.list(workspace)[0].id == whole.id


# ---------------------------------------------------------------------- export

def test_export_markdown_transcript_and_jsonl(store: SessionStore, workspace: Path) -> None:
    log = new_session(store, workspace, goal="Add a --verbose flag")
    log.append(RunStarted(run_id="r", goal="Add a --verbose flag"))
    log.append(PlanUpdated(steps=[PlanStep(title="read cli.py", status="done"),
                                  PlanStep(title="add flag", status="in_progress"), PlanStep(title="test")]))
    log.append(AssistantDelta(message_id="m1", text="Let me "))
    log.append(AssistantDelta(message_id="m1", text="look."))
    log.append(AssistantMessage(message_id="m1", text="Let me look."))
    log.append(ToolCallRequested(call_id="c1", tool="read_file", arguments='{"path": "cli.py"}'))
    log.append(ToolCallFinished(call_id="c1", tool="read_file", ok=True, duration_ms=3.2))
    log.append(ApprovalRequested(call_id="c2", tool="run_command", arguments='{"command": "pytest -q"}',
                                 kind="command", reason="not allowed by policy"))
    log.append(ApprovalDecided(call_id="c2", decision="reject", reason="run only the cli tests"))
    log.append(ToolCallFinished(call_id="c2", tool="run_command", ok=False, status="rejected"))
    log.append(ErrorEvent(message="context window full", hint="raise n_ctx", recoverable=True))
    log.append(AssistantDelta(message_id="m2", text="Half a thou"))
    log.append(RunFinished(run_id="r", status="failed", summary="gave up"))
    log.close()

    md = store.export(log.id, "md")
    assert md.startswith("# Add a --verbose flag\n")
    for expected in ("### User\n\nAdd a --verbose flag", "- [x] read cli.py", "- [ ] add flag *(in progress)*",
                     "- [ ] test", "### Assistant (executor)\n\nLet me look.",
                     "- tool `read_file` (path=cli.py) → ok in 3 ms",
                     "**Approval requested** for `run_command`: command=pytest -q (guarded: not allowed by policy)",
                     "**Rejected**: run only the cli tests", "- tool `run_command` → rejected",
                     "**Error:** context window full\n\nFix: raise n_ctx", "### Assistant (cut off)\n\nHalf a thou",
                     "*Run finished: failed* — gave up", "**Final status:** failed", f"- Session: `{log.id}`"):
        assert expected in md, expected
    assert md.count("Let me look.") == 1  # streamed deltas are replaced by the final message

    jsonl = store.export(log.id, "jsonl")
    assert [json.loads(line)["seq"] for line in jsonl.splitlines()] == list(range(1, 16))
    with pytest.raises(SessionError, match="unknown export format"):
        store.export(log.id, "html")  # type: ignore[arg-type]
