"""The issue's acceptance path across real processes: pause for approval, SIGKILL, resume in a new process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import REPO, agent_bin
from tests.fakes.model_server import Reply, ScriptedModelServer, ToolCall

OLD = "import sys\n\nprint('hello')\n"
NEW = "import sys\n\nif '--verbose' in sys.argv:\n    print('verbose on')\nprint('hello')\n"
PLAN = ToolCall("update_plan", {"steps": [{"title": "Read cli.py", "status": "in_progress"},
                                          {"title": "Add --verbose", "status": "pending"},
                                          {"title": "Run it", "status": "pending"}]})


def read_log(state_dir: Path, session_id: str) -> list[dict]:
    path = state_dir / "sessions" / session_id / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def start_paused_run(model_server: ScriptedModelServer, agent_env: dict[str, str]) -> tuple[str, list[dict]]:
    """Goal -> plan -> read -> write (paused for approval) in one process, then SIGKILL it."""
    model_server.add(Reply(tool_calls=[PLAN]), Reply(tool_calls=[ToolCall("read_file", {"path": "cli.py"})]),
                     Reply(text="I will add the flag.", tool_calls=[ToolCall("write_file",
                                                                            {"path": "cli.py", "content": NEW})]))
    proc = subprocess.Popen([sys.executable, "-m", "tests.e2e.driver", "add a --verbose flag to cli.py"],
                            cwd=REPO, env=agent_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line.strip().endswith("PAUSED"), (line, proc.stderr.read() if proc.poll() is not None else "")  # type: ignore[union-attr]
        session_id = line.split()[0]
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    state_dir = Path(agent_env["AGENT_STATE_DIR"])
    return session_id, read_log(state_dir, session_id)


def assert_log_is_clean(events: list[dict]) -> None:
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1)), "events duplicated, lost or reordered"
    finished = [e["call_id"] for e in events if e["type"] == "tool_call_finished"]
    assert len(finished) == len(set(finished)), "a tool call finished twice"


def test_pause_kill_resume_approve_finishes_the_task(model_server: ScriptedModelServer, agent_env: dict[str, str],
                                                     workspace: Path) -> None:
    (workspace / "cli.py").write_text(OLD)
    agent_env["AGENT_ALLOWED_COMMANDS"] = "python cli.py"
    session_id, before = start_paused_run(model_server, agent_env)
    types = [e["type"] for e in before]
    assert types[:3] == ["session_started", "user_message", "run_started"]
    assert "plan_updated" in types and types.count("approval_requested") == 1
    request = next(e for e in before if e["type"] == "approval_requested")
    assert request["tool"] == "write_file" and "+    print('verbose on')" in request["diff"]
    assert (workspace / "cli.py").read_text() == OLD, "nothing is written before approval"

    listing = subprocess.run([agent_bin(), "sessions", "list", "--json"], env=agent_env, capture_output=True,
                             text=True, check=True)
    row = json.loads(listing.stdout.splitlines()[0])
    assert (row["id"], row["status"]) == (session_id, "paused")

    model_server.add(Reply(tool_calls=[ToolCall("run_command", {"command": "python cli.py --verbose"})]),
                     Reply(text="Added a --verbose flag to cli.py and ran it: it prints 'verbose on'."),
                     Reply(text="APPROVED: the flag is there and the run printed verbose on."))
    done = subprocess.run([agent_bin(), "run", "--resume", session_id, "--approve", "--json"], env=agent_env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (workspace / "cli.py").read_text() == NEW
    printed = [json.loads(line) for line in done.stdout.splitlines()]
    assert all("seq" in e and "type" in e for e in printed)

    events = read_log(Path(agent_env["AGENT_STATE_DIR"]), session_id)
    assert_log_is_clean(events)
    types = [e["type"] for e in events]
    assert types.count("approval_requested") == 1 and types.count("approval_decided") == 1
    write = next(e for e in events if e["type"] == "tool_call_finished" and e["tool"] == "write_file")
    assert write["status"] == "ok" and write["diff"]
    command = next(e for e in events if e["type"] == "tool_call_finished" and e["tool"] == "run_command")
    assert command["status"] == "ok" and "verbose on" in command["output_preview"]
    review = next(e for e in events if e["type"] == "review_finished")
    assert review["ok"] is True
    assert events[-1]["type"] == "run_finished" and events[-1]["status"] == "done"
    # The resumed model call saw the write's result; the key never reached any file of the state dir.
    assert any(m.get("role") == "tool" and "cli.py" in str(m.get("content"))
               for m in model_server.requests[3]["messages"])
    for path in Path(agent_env["AGENT_STATE_DIR"]).rglob("*"):
        if path.is_file():
            assert b"test-key" not in path.read_bytes(), path


def test_pause_kill_resume_reject_sends_the_reason_to_the_model(model_server: ScriptedModelServer,
                                                                agent_env: dict[str, str], workspace: Path) -> None:
    (workspace / "cli.py").write_text(OLD)
    session_id, _ = start_paused_run(model_server, agent_env)
    model_server.add(Reply(text="Understood: I left cli.py unchanged."))
    done = subprocess.run([agent_bin(), "run", "--resume", session_id, "--reject", "use argparse instead"],
                          env=agent_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (workspace / "cli.py").read_text() == OLD
    tool_messages = [m for m in model_server.requests[-1]["messages"] if m.get("role") == "tool"]
    assert any("use argparse instead" in str(m.get("content")) for m in tool_messages)
    events = read_log(Path(agent_env["AGENT_STATE_DIR"]), session_id)
    assert_log_is_clean(events)
    decided = next(e for e in events if e["type"] == "approval_decided")
    assert (decided["decision"], decided["reason"]) == ("reject", "use argparse instead")
    rejected = next(e for e in events if e["type"] == "tool_call_finished" and e["tool"] == "write_file")
    assert rejected["status"] == "rejected"
    assert "left cli.py unchanged" in done.stdout


def test_headless_ask_mode_without_tty_pauses_with_exit_4(model_server: ScriptedModelServer,
                                                           agent_env: dict[str, str], workspace: Path) -> None:
    model_server.add(Reply(tool_calls=[ToolCall("write_file", {"path": "notes.txt", "content": "hi\n"})]))
    proc = subprocess.run([agent_bin(), "run", "write notes.txt"], env=agent_env, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 4, proc.stderr
    assert "agent run --resume" in proc.stderr and "--approve" in proc.stderr
    assert not (workspace / "notes.txt").exists()
