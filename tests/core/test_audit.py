"""AuditLog: one redacted JSON line per record, in a file per UTC day, never raising on I/O failure."""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from pathlib import Path

import pytest

from core.audit import AuditLog, read_audit

SECRET = "sk-live-0123456789abcdef"
NOON = dt.datetime(2026, 3, 14, 12, 0, 0, 500_000, tzinfo=dt.UTC)


def fixed(moment: dt.datetime) -> dict:
    return {"clock": lambda: moment}


def test_record_appends_json_lines_to_the_utc_day_file(state_dir: Path) -> None:
    log = AuditLog(state_dir, **fixed(NOON))
    log.record("tool_call", tool="read_file", args={"path": "a.py"}, ok=True, duration_ms=1.5)
    log.record("approval", call_id="c1", decision="approve")
    path = state_dir / "audit" / "2026-03-14.jsonl"
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first == {"ts": "2026-03-14T12:00:00.500Z", "kind": "tool_call", "tool": "read_file",
                     "args": {"path": "a.py"}, "ok": True, "duration_ms": 1.5}
    assert read_audit(state_dir, "2026-03-14")[1]["decision"] == "approve"
    assert read_audit(state_dir, dt.date(2026, 3, 14)) == [first, json.loads(lines[1])]
    assert read_audit(state_dir, "2026-03-15") == []
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_local_midnight_uses_the_utc_date(state_dir: Path) -> None:
    late = dt.datetime(2026, 3, 14, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    AuditLog(state_dir, **fixed(late.astimezone(dt.UTC))).record("x")
    assert (state_dir / "audit" / "2026-03-15.jsonl").exists()


def test_default_clock_writes_todays_file(state_dir: Path) -> None:
    before = dt.datetime.now(dt.UTC).date()
    AuditLog(state_dir).record("ping")
    after = dt.datetime.now(dt.UTC).date()
    days = {before.isoformat(), after.isoformat()}
    files = {p.stem for p in (state_dir / "audit").iterdir()}
    assert files <= days and len(files) == 1
    assert any(e["kind"] == "ping" for d in days for e in read_audit(state_dir, d))


def test_secrets_never_reach_the_file(state_dir: Path) -> None:
    log = AuditLog(state_dir, secrets=[SECRET, "", "x"], **fixed(NOON))
    log.record(
        "tool_call",
        command=f"curl -H 'Authorization: Bearer abcdefghijklmnop' https://api/?k={SECRET}",
        argv=["env", "GITHUB_TOKEN=ghp_zzzzzzzz", "my_password='p a s s'", "deploy"],
        nested={"headers": {"Authorization": "Basic dXNlcjpwYXNz", "X-Api-Key": "k-123456"},
                "list": [{"OPENAI_API_KEY": "anything"}, {"note": f"the key is {SECRET}!"}]},
        api_key=SECRET,
        db_password="hunter22",
        path=Path("/w/a.py"),
        raw=b"bytes " + SECRET.encode(),
    )
    text = (state_dir / "audit" / "2026-03-14.jsonl").read_text()
    for leaked in (SECRET, "abcdefghijklmnop", "ghp_zzzzzzzz", "p a s s", "dXNlcjpwYXNz", "k-123456", "anything",
                   "hunter22"):
        assert leaked not in text
    entry = json.loads(text)
    assert entry["command"] == "curl -H 'Authorization: Bearer ***' https://api/?k=***"
    assert entry["argv"] == ["env", "GITHUB_TOKEN=***", "my_password=***", "deploy"]
    assert entry["nested"]["headers"] == {"Authorization": "***", "X-Api-Key": "***"}
    assert entry["nested"]["list"] == [{"OPENAI_API_KEY": "***"}, {"note": "the key is ***!"}]
    assert entry["api_key"] == "***" and entry["db_password"] == "***"
    assert entry["path"] == "/w/a.py" and entry["raw"] == "bytes ***"
    # Too short to be a secret: ordinary text stays readable.
    log.record("note", text="x marks the spot")
    assert read_audit(state_dir, "2026-03-14")[-1]["text"] == "x marks the spot"


def test_ordinary_words_are_not_masked(state_dir: Path) -> None:
    log = AuditLog(state_dir, **fixed(NOON))
    log.record("note", text="the bearer of news; keyboard=us", keys=["monkey"])
    entry = read_audit(state_dir, "2026-03-14")[0]
    assert entry["text"] == "the bearer of news; keyboard=us" and entry["keys"] == ["monkey"]


def test_io_failure_is_remembered_not_raised(tmp_path: Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state directory should be")
    log = AuditLog(blocker, **fixed(NOON))
    log.record("tool_call", tool="x")
    assert log.last_error is not None and str(blocker / "audit" / "2026-03-14.jsonl") in log.last_error


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_unwritable_directory_is_remembered(state_dir: Path) -> None:
    (state_dir / "audit").mkdir()
    (state_dir / "audit").chmod(0o500)
    log = AuditLog(state_dir, **fixed(NOON))
    log.record("tool_call")
    assert log.last_error is not None and "Permission denied" in log.last_error


def test_concurrent_records_stay_whole_lines(state_dir: Path) -> None:
    log = AuditLog(state_dir, **fixed(NOON))

    def writer(n: int) -> None:
        for i in range(50):
            log.record("tick", writer=n, i=i, pad="x" * 2000)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    entries = read_audit(state_dir, "2026-03-14")
    assert len(entries) == 200
    assert {(e["writer"], e["i"]) for e in entries} == {(n, i) for n in range(4) for i in range(50)}


def test_read_audit_skips_a_torn_last_line(state_dir: Path) -> None:
    log = AuditLog(state_dir, **fixed(NOON))
    log.record("one")
    with open(state_dir / "audit" / "2026-03-14.jsonl", "a") as f:
        f.write('{"ts": "2026-03-14T12:00:01Z", "kind": "tor')
    assert [e["kind"] for e in read_audit(state_dir, "2026-03-14")] == ["one"]
