"""`agent` commands as an operator uses them: exit codes, readable output, JSON output."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from core.cli import main
from core.events import AssistantMessage, RunFinished, RunStarted, SessionStarted, UserMessage
from core.session_log import SessionStore
from tests.fakes.model_server import Reply, ScriptedModelServer, ToolCall


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, workspace: Path, state_dir: Path) -> dict[str, str]:
    values = {"AGENT_WORKSPACE": str(workspace), "AGENT_STATE_DIR": str(state_dir), "HOME": str(state_dir)}
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    return values


def make_session(state_dir: Path, workspace: Path, goal: str, answer: str) -> str:
    log = SessionStore(state_dir).create(workspace=workspace, model="m")
    log.append(SessionStarted(session_id=log.id, workspace=str(workspace), model="m"))
    log.append(UserMessage(text=goal))
    log.append(RunStarted(run_id="r1", goal=goal))
    log.append(AssistantMessage(message_id="r1-1", text=answer))
    log.append(RunFinished(run_id="r1", status="done"))
    log.close()
    return log.id


def test_sessions_list_show_export_fork_repair(env: dict[str, str], workspace: Path, state_dir: Path,
                                               capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    sid = make_session(state_dir, workspace, "add a flag", "Added the flag.")
    other = tmp_path / "other"
    other.mkdir()
    make_session(state_dir, other, "elsewhere", "ok")
    assert main(["sessions", "list"]) == 0
    out = capsys.readouterr().out
    assert sid in out and "add a flag" in out and "elsewhere" not in out
    assert main(["sessions", "list", "--all", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {r["title"] for r in rows} == {"add a flag", "elsewhere"}
    assert [r["other_workspace"] for r in rows if r["title"] == "elsewhere"] == [True]
    assert main(["sessions", "show", sid[:-3]]) == 0  # a unique prefix is enough
    assert "Added the flag." in capsys.readouterr().out
    assert main(["sessions", "export", sid, "--format", "jsonl"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2, 3, 4, 5]
    assert main(["sessions", "fork", sid, "--at", "3"]) == 0
    forked = capsys.readouterr().out.split()[-1]
    assert len(SessionStore(state_dir).open(forked).read_events()) == 3
    (state_dir / "sessions" / sid / "meta.json").write_text("{broken")
    assert main(["sessions", "list"]) == 0
    assert "broken" in capsys.readouterr().out
    assert main(["sessions", "repair", sid]) == 0
    capsys.readouterr()
    assert main(["sessions", "list", "--json"]) == 0
    assert all(not json.loads(r)["broken"] for r in capsys.readouterr().out.splitlines())


def test_unknown_session_is_a_usage_error(env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sessions", "show", "nope"]) == 2
    assert "nope" in capsys.readouterr().err


def test_policies_validate_accepts_shipped_and_rejects_broken_with_file_line(
        env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policies", "validate"]) == 0
    shipped = Path(__file__).resolve().parents[2] / "policies"
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("tools.yaml", "paths.yaml", "network.yaml"):
        (broken / name).write_text((shipped / name).read_text())
    text = (broken / "tools.yaml").read_text().replace("decision: allow", "decision: maybe", 1)
    (broken / "tools.yaml").write_text(text)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "decision: maybe" in ln)
    capsys.readouterr()
    assert main(["policies", "validate", str(broken)]) == 2
    assert f"tools.yaml:{line}:" in capsys.readouterr().err
    assert main(["policies", "show"]) == 0
    assert "run_command" in capsys.readouterr().out


def test_config_error_exits_2_naming_the_variable(env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("AGENT_APPROVAL", "sometimes")
    assert main(["run", "do it"]) == 2
    err = capsys.readouterr().err
    assert "AGENT_APPROVAL" in err and "ask, auto-edit, full-auto" in err


def test_doctor_reports_each_check(env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    with ScriptedModelServer(model_id="qwen-coder", context_length=4096) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        assert main(["doctor"]) == 1  # the context window is too small for agent work
        out = capsys.readouterr().out
    assert "OK   endpoint" in out and "OK   model: qwen-coder" in out
    assert "FIX  context window: 4096 tokens" in out and "--context-length" in out
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{port}/v1")
    assert main(["doctor"]) == 3
    assert "lms server start --bind 0.0.0.0" in capsys.readouterr().out
    monkeypatch.setenv("AGENT_TUI_SOCKET", str(env["AGENT_STATE_DIR"]) + "/no-server.sock")
    assert main(["doctor", "--quick", "--json"]) == 0
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)}
    assert set(checks) == {"workspace", "state dir", "policies", "warm start"}
    # Information only: a missing warm server never fails the check (nor the container's health check).
    assert checks["warm start"]["ok"] and "agent-tui starts cold" in checks["warm start"]["detail"]


def test_run_prints_readable_progress_and_exits_0(env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                                  workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = {"steps": [{"title": "Write notes", "status": "in_progress"}]}
    with ScriptedModelServer([Reply(tool_calls=[ToolCall("update_plan", plan)]),
                              Reply(tool_calls=[ToolCall("write_file", {"path": "notes.txt", "content": "hi\n"})]),
                              Reply(text="Wrote notes.txt.")]) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        monkeypatch.setenv("AGENT_REVIEW_ROUNDS", "0")
        assert main(["run", "--approval", "full-auto", "write notes"]) == 0
    out = capsys.readouterr().out
    assert "> write notes" in out
    assert "[>] Write notes" in out
    assert "* write_file notes.txt" in out and "ok write_file" in out
    assert "Wrote notes.txt." in out and "run done" in out
    assert (workspace / "notes.txt").read_text() == "hi\n"


def test_run_with_unreachable_endpoint_exits_3(env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{port}/v1")
    assert main(["run", "anything"]) == 3
    assert "Serve on Local Network" in capsys.readouterr().err
