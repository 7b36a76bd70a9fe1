"""An unwritable or full state directory: `agent run` says so plainly, exits non-zero and leaves the workspace alone."""

from __future__ import annotations

import json
import resource
import subprocess
from pathlib import Path

import pytest

from core import cli
from tests.fakes.model_server import Reply, ScriptedModelServer, ToolCall
from tests.reliability.crash import agent_bin, agent_env, read_log

DiskFullRun = tuple[subprocess.CompletedProcess[str], Path, Path]
WRITE = Reply(tool_calls=[ToolCall("write_file", {"path": "new.txt", "content": "hi\n"})])


@pytest.fixture
def server() -> ScriptedModelServer:
    with ScriptedModelServer() as s:
        yield s


@pytest.mark.parametrize("where", ["a_file", "under_proc"])
def test_unwritable_state_dir_is_a_clear_error(where: str, server: ScriptedModelServer, workspace: Path,
                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state-file" if where == "a_file" else Path("/proc/self/dev-agent-state")
    if where == "a_file":
        state.write_text("not a directory\n")
    server.add(WRITE, Reply(text="done"))
    for name, value in agent_env(server.url, workspace, state, "full-auto").items():
        monkeypatch.setenv(name, value)
    code = cli.main(["run", "write new.txt"])
    err = capsys.readouterr().err
    assert code != 0
    assert err.startswith("agent: ") and "state" in err and "Traceback" not in err
    assert not list(workspace.iterdir())
    assert not server.requests, "nothing is asked of the model before the session can be recorded"


def run_with_file_size_limit(server: ScriptedModelServer, workspace: Path, state: Path,
                             limit: int) -> subprocess.CompletedProcess[str]:
    """`agent run` with RLIMIT_FSIZE: every write past `limit` bytes fails with EFBIG, as on a full disk."""
    state.mkdir()
    env = agent_env(server.url, workspace, state, "full-auto")
    return subprocess.run([agent_bin(), "run", "write new.txt"], env=env, capture_output=True, text=True,
                          timeout=180, stdin=subprocess.DEVNULL,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))


@pytest.fixture(scope="module")
def full_mid_run(tmp_path_factory: pytest.TempPathFactory) -> DiskFullRun:
    """One run whose state writes start failing after the first tool call (its 50 kB result fills the limit)."""
    base = tmp_path_factory.mktemp("disk-full")
    workspace = base / "workspace"
    workspace.mkdir()
    (workspace / "big.txt").write_text("x" * 50_000)
    with ScriptedModelServer([Reply(tool_calls=[ToolCall("read_file", {"path": "big.txt"})]), WRITE,
                              Reply(text="done")]) as server:
        done = run_with_file_size_limit(server, workspace, base / "state", 60_000)
    [log] = (base / "state").rglob("events.jsonl")
    return done, workspace, log


def test_disk_full_during_a_run_fails_the_run_and_keeps_the_log(
        full_mid_run: DiskFullRun) -> None:
    done, workspace, log = full_mid_run
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert not (workspace / "new.txt").exists()
    events, problems = read_log(log)
    assert not problems
    assert events[-1]["type"] == "run_finished" and events[-1]["status"] == "failed"


def test_disk_full_error_points_at_the_state_dir(full_mid_run: DiskFullRun) -> None:
    error = next(e for e in read_log(full_mid_run[2])[0] if e["type"] == "error")
    assert "endpoint" not in json.dumps(error) and "state" in error["hint"], json.dumps(error)


def test_disk_full_at_start_is_a_clear_error(server: ScriptedModelServer, workspace: Path, tmp_path: Path) -> None:
    server.add(WRITE, Reply(text="done"))
    done = run_with_file_size_limit(server, workspace, tmp_path / "state", 20_000)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr and done.stderr.startswith("agent: ")
    assert not list(workspace.iterdir())
