"""The workspace watcher over a real engine, real file writes and real inotify: only outside edits are reported."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from core.config import Settings
from core.engine import Engine
from core.watch import WorkspaceWatcher
from tests.core.conftest import open_engine
from tests.fakes.model_server import Reply, ScriptedModelServer, ToolCall

EngineFactory = Callable[..., Any]
TIMEOUT_S = 15.0


@pytest.fixture
async def make_engine(engine_settings: Callable[..., Settings]) -> AsyncIterator[EngineFactory]:
    """A started engine with a started watcher attached (both closed at the end)."""
    opened: list[tuple[Engine, WorkspaceWatcher]] = []

    async def factory(**env: str) -> Engine:
        engine = await open_engine(engine_settings(**env))
        watcher = WorkspaceWatcher.for_engine(engine)
        await watcher.start()
        opened.append((engine, watcher))
        return engine

    yield factory
    for engine, watcher in opened:
        await watcher.stop()
        await engine.close()


def external(engine: Engine) -> list[str]:
    return [e.path for e in engine.history if e.type == "file_changed" and e.source == "external"]


async def eventually(condition: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT_S
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def sentinel(engine: Engine, workspace: Path, name: str = "sentinel.txt") -> None:
    """Edit a file from outside and wait until it is reported: every change made before it has been judged."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT_S
    version = 0
    while name not in external(engine):
        if loop.time() > deadline:
            raise AssertionError(f"the outside edit of {name} was never reported")
        version += 1  # a command's grace period may swallow one edit: edit again until one is seen
        (workspace / name).write_text(f"version {version}\n")
        await asyncio.sleep(0.5)


async def test_an_outside_edit_is_recorded_and_the_agent_is_told_before_its_next_turn(
        make_engine: EngineFactory, server: ScriptedModelServer, workspace: Path) -> None:
    (workspace / "src").mkdir()
    (workspace / "src" / "app.py").write_text("x = 1\n")
    server.add(Reply(text="I will read it again."))
    engine = await make_engine()
    (workspace / "src" / "app.py").write_text("x = 2\n")
    await eventually(lambda: "src/app.py" in external(engine), "the external file_changed event")
    assert external(engine) == ["src/app.py"]
    await engine.submit("go on")
    await engine.wait_idle()
    user_text = str([m for m in server.requests[-1]["messages"] if m.get("role") == "user"][-1]["content"])
    assert "outside the agent" in user_text and "src/app.py" in user_text


async def test_the_agents_own_write_is_not_reported_as_external(
        make_engine: EngineFactory, server: ScriptedModelServer, workspace: Path) -> None:
    (workspace / "app.py").write_text("v = 1\n")
    server.add(Reply(tool_calls=[ToolCall("write_file", {"path": "app.py", "content": "v = 2\n"}),
                                 ToolCall("write_file", {"path": "new.py", "content": "print('new')\n"})]),
               Reply(text="Written."))
    engine = await make_engine(AGENT_APPROVAL="auto-edit")
    await engine.submit("bump v and add new.py")
    await engine.wait_idle()
    assert (workspace / "app.py").read_text() == "v = 2\n" and (workspace / "new.py").exists()
    agent = [e.path for e in engine.history if e.type == "file_changed" and e.source == "agent"]
    assert sorted(agent) == ["app.py", "new.py"]
    await sentinel(engine, workspace)
    assert external(engine) == ["sentinel.txt"]


async def test_an_outside_edit_after_the_agents_write_is_reported(
        make_engine: EngineFactory, server: ScriptedModelServer, workspace: Path) -> None:
    server.add(Reply(tool_calls=[ToolCall("write_file", {"path": "app.py", "content": "v = 2\n"})]),
               Reply(text="Written."))
    engine = await make_engine(AGENT_APPROVAL="auto-edit")
    await engine.submit("write app.py")
    await engine.wait_idle()
    (workspace / "app.py").write_text("v = 3  # operator\n")
    await eventually(lambda: "app.py" in external(engine), "the operator's edit of the agent's file")


async def test_undo_and_redo_are_not_reported_as_external(
        make_engine: EngineFactory, server: ScriptedModelServer, workspace: Path) -> None:
    (workspace / "app.py").write_text("v = 1\n")
    server.add(Reply(tool_calls=[ToolCall("write_file", {"path": "app.py", "content": "v = 2\n"})]),
               Reply(text="Changed."))
    engine = await make_engine(AGENT_APPROVAL="auto-edit")
    await engine.submit("bump v")
    await engine.wait_idle()
    await engine.undo()
    assert (workspace / "app.py").read_text() == "v = 1\n"
    await engine.redo()
    assert (workspace / "app.py").read_text() == "v = 2\n"
    await sentinel(engine, workspace)
    assert external(engine) == ["sentinel.txt"]


async def test_files_a_command_writes_are_the_agents(
        make_engine: EngineFactory, server: ScriptedModelServer, workspace: Path) -> None:
    server.add(Reply(tool_calls=[ToolCall("run_command", {"command": "touch made-by-command.txt"})]),
               Reply(text="Touched."))
    engine = await make_engine(AGENT_ALLOWED_COMMANDS="touch")
    await engine.submit("touch a file")
    await engine.wait_idle()
    assert (workspace / "made-by-command.txt").exists()
    assert [e.status for e in engine.history if e.type == "tool_call_finished"] == ["ok"]
    await sentinel(engine, workspace)
    assert external(engine) == ["sentinel.txt"]


async def test_ignored_paths_are_never_reported(make_engine: EngineFactory, workspace: Path,
                                                state_dir: Path) -> None:
    engine = await make_engine()
    for rel in (".git/index", "pkg/__pycache__/mod.cpython-311.pyc", "notes.txt.swp", "notes.txt~", ".#notes.txt",
                "4913", ".env", "keys/server.pem", ".app.py.0123456789ab.tmp",
                ".dev-agent-restore-0123456789ab"):
        path = workspace / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("ignored\n")
    await sentinel(engine, workspace)
    assert external(engine) == ["sentinel.txt"]


async def test_a_state_dir_inside_the_workspace_is_ignored(server: ScriptedModelServer, workspace: Path) -> None:
    inner_state = workspace / ".agent-state"
    inner_state.mkdir()
    reported: list[list[str]] = []
    watcher = WorkspaceWatcher(workspace, reported.append, ignore_dirs=(inner_state,))
    await watcher.start()
    try:
        (inner_state / "sessions").mkdir()
        (inner_state / "sessions" / "events.jsonl").write_text("{}\n")
        (workspace / "README.md").write_text("# hi\n")
        await eventually(lambda: any("README.md" in batch for batch in reported), "the README edit")
    finally:
        await watcher.stop()
    assert [path for batch in reported for path in batch] == ["README.md"]


async def test_a_deleted_file_is_reported(workspace: Path) -> None:
    (workspace / "old.txt").write_text("bye\n")
    reported: list[list[str]] = []
    watcher = WorkspaceWatcher(workspace, reported.append)
    await watcher.start()
    try:
        (workspace / "old.txt").unlink()
        await eventually(lambda: ["old.txt"] in reported, "the deletion")
    finally:
        await watcher.stop()


async def test_a_watch_that_cannot_start_raises_an_os_error(tmp_path: Path) -> None:
    watcher = WorkspaceWatcher(tmp_path / "missing", lambda paths: None)
    with pytest.raises(OSError):
        await watcher.start()
    await watcher.stop()
