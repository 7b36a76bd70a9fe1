"""Endpoint faults, hostile model output and outside edits through the in-process engine; the session always goes on."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from core.config import load_settings
from core.engine import Engine
from core.events import Event
from core.session_log import SessionStore
from tests.fakes.model_server import Fault, Reply, ScriptedModelServer, ToolCall

EngineFactory = Callable[..., Any]
MEGABYTE_COMMAND = "python3 -c \"print('HEADMARK'); print('x' * 1000000); print('TAILMARK')\""


@pytest.fixture
def server() -> Any:
    with ScriptedModelServer(model_id="scripted-model") as s:
        yield s


@pytest.fixture
async def make_engine(server: ScriptedModelServer, workspace: Path, state_dir: Path) -> AsyncIterator[EngineFactory]:
    engines: list[Engine] = []

    async def factory(**env: str) -> Engine:
        settings = load_settings({"HOME": str(state_dir), "OPENAI_BASE_URL": server.url, "OPENAI_API_KEY": "k",
                                  "AGENT_WORKSPACE": str(workspace), "AGENT_STATE_DIR": str(state_dir),
                                  "AGENT_TOOLS_DIR": str(state_dir / "tools"), "AGENT_REVIEW_ROUNDS": "0", **env})
        session = SessionStore(state_dir).create(workspace=workspace, model=None, base_url=server.url)
        engine = Engine(settings, session, client="test")
        await engine.start()
        engines.append(engine)
        return engine

    yield factory
    for engine in engines:
        await engine.close()


def of(engine: Engine, kind: str) -> list[Event]:
    return [e for e in engine.history if e.type == kind]


def status(engine: Engine) -> str:
    return of(engine, "run_finished")[-1].status


async def run(engine: Engine, goal: str) -> None:
    await engine.submit(goal)
    await engine.wait_idle()


async def still_usable(engine: Engine, server: ScriptedModelServer) -> None:
    """A follow-up message in the same session completes and the log stays numbered 1..N."""
    server.add(Reply(text="Still here."))
    await run(engine, "are you still there?")
    assert status(engine) == "done"
    assert of(engine, "assistant_message")[-1].text == "Still here."
    seqs = [e.seq for e in engine.session.read_events()]
    assert seqs == list(range(1, len(seqs) + 1))


@pytest.mark.parametrize("faults", [
    [Fault("http_500"), Fault("http_500")],
    [Fault("http_status", status=503, body="upstream overloaded")] * 2,
    [Fault("cut", reply=Reply(text="half an answer " * 30), after_chunks=4)],
    [Fault("cut", reply=Reply(tool_calls=[ToolCall("write_file", {"path": "a.txt", "content": "x" * 500})]),
           after_chunks=5)],
], ids=["http_500", "http_503_text_body", "cut_text", "cut_tool_call"])
async def test_endpoint_fault_fails_the_run_with_a_hint_and_the_session_goes_on(
        make_engine: EngineFactory, server: ScriptedModelServer, workspace: Path, faults: list[Fault]) -> None:
    server.add(*faults)
    engine = await make_engine(AGENT_APPROVAL="full-auto")
    await run(engine, "first try")
    assert status(engine) == "failed"
    assert of(engine, "error")[-1].hint
    assert not (workspace / "a.txt").exists(), "a half-streamed tool call is never executed"
    await still_usable(engine, server)


async def test_hanging_endpoint_can_be_interrupted_and_the_session_goes_on(make_engine: EngineFactory,
                                                                           server: ScriptedModelServer) -> None:
    server.add(Fault("hang"))
    engine = await make_engine()
    await engine.submit("wait for a model that never answers")
    while not server.requests:
        await asyncio.sleep(0.02)
    await engine.cancel()
    await engine.wait_idle()
    assert status(engine) == "cancelled"
    await still_usable(engine, server)


async def test_malformed_json_and_unknown_tools_are_told_to_the_model(make_engine: EngineFactory,
                                                                      server: ScriptedModelServer) -> None:
    server.add(Reply(tool_calls=[ToolCall("read_file", '{"path": "a.txt", "start_line": ')]),
               Reply(tool_calls=[ToolCall("list_dir", '["not", "an", "object"]')]),
               Reply(tool_calls=[ToolCall("rm_rf_everything", {"path": "/"})]),
               Reply(text="I could not use those tools."))
    engine = await make_engine(AGENT_APPROVAL="full-auto")
    await run(engine, "use broken tools")
    finished = of(engine, "tool_call_finished")
    assert len(finished) == 3 and not any(f.ok for f in finished)
    assert status(engine) == "done"
    told = [m for m in server.requests[-1]["messages"] if m.get("role") == "tool"]
    assert len(told) == 3 and all(str(m.get("content")).strip() for m in told)
    await still_usable(engine, server)


async def test_malformed_json_for_a_guarded_tool_is_refused_not_asked(make_engine: EngineFactory,
                                                                     server: ScriptedModelServer,
                                                                     workspace: Path) -> None:
    server.add(Reply(tool_calls=[ToolCall("write_file", '{"path": "a.txt", "content": "unterminated')]),
               Reply(text="I will send valid JSON next time."))
    engine = await make_engine(AGENT_APPROVAL="full-auto")
    await run(engine, "write with broken JSON")
    assert not engine.pending_approvals and not of(engine, "approval_requested")
    assert status(engine) == "done"
    assert of(engine, "tool_call_finished")[-1].status in ("failed", "refused")
    assert not (workspace / "a.txt").exists()


async def test_a_megabyte_of_command_output_reaches_the_model_as_head_and_tail(
        make_engine: EngineFactory, server: ScriptedModelServer, state_dir: Path) -> None:
    server.add(Reply(tool_calls=[ToolCall("run_command", {"command": MEGABYTE_COMMAND})]), Reply(text="Long output."))
    engine = await make_engine(AGENT_APPROVAL="full-auto")
    await run(engine, "print a lot")
    finished = of(engine, "tool_call_finished")[-1]
    assert finished.status == "ok"
    tool_message = next(m for m in server.requests[-1]["messages"] if m.get("role") == "tool")
    content = str(tool_message["content"])
    assert "HEADMARK" in content and "TAILMARK" in content and "omitted" in content
    assert len(content) < 100_000
    assert engine.session.events_path.stat().st_size < 200_000, "the log keeps a preview, not the megabyte"
    await still_usable(engine, server)


async def test_a_model_that_never_stops_calling_tools_ends_at_max_turns(make_engine: EngineFactory,
                                                                        server: ScriptedModelServer) -> None:
    looping = True

    def responder(request: dict[str, Any]) -> Reply:
        return Reply(tool_calls=[ToolCall("list_dir", {"path": "."})]) if looping else Reply(text="Stopped.")

    server.responder = responder
    engine = await make_engine(AGENT_MAX_TURNS="4")
    await run(engine, "loop forever")
    assert status(engine) == "max_turns"
    assert len(of(engine, "tool_call_finished")) >= 3
    looping = False
    await run(engine, "stop now")
    assert status(engine) == "done"
    assert of(engine, "assistant_message")[-1].text == "Stopped."


async def test_a_file_changed_between_approval_and_apply_is_not_overwritten(
        make_engine: EngineFactory, server: ScriptedModelServer, workspace: Path) -> None:
    (workspace / "a.txt").write_text("original\n")
    server.add(Reply(tool_calls=[ToolCall("write_file", {"path": "a.txt", "content": "from the agent\n"})]),
               Reply(text="Noted."))
    engine = await make_engine(AGENT_APPROVAL="ask")
    await run(engine, "rewrite a.txt")
    [request] = engine.pending_approvals
    assert "+from the agent" in (request.diff or "")
    (workspace / "a.txt").write_text("edited by the operator meanwhile\n")
    await engine.approve(request.call_id)
    await engine.wait_idle()
    assert (workspace / "a.txt").read_text() == "edited by the operator meanwhile\n"
    finished = of(engine, "tool_call_finished")[-1]
    assert finished.status == "failed" and "changed since" in finished.output_preview
    told = [str(m.get("content")) for m in server.requests[-1]["messages"] if m.get("role") == "tool"]
    assert any("changed since" in t for t in told)


async def test_non_utf8_file_names_do_not_break_a_run(make_engine: EngineFactory, server: ScriptedModelServer,
                                                     workspace: Path) -> None:
    odd = os.path.join(os.fsencode(workspace), b"caf\xe9-\xff.txt")
    with open(odd, "wb") as handle:
        handle.write(b"odd name\n")
    name = os.fsdecode(b"caf\xe9-\xff.txt")
    server.add(Reply(tool_calls=[ToolCall("list_dir", {"path": "."})]),
               Reply(tool_calls=[ToolCall("read_file", {"path": name})]),
               Reply(tool_calls=[ToolCall("search_files", {"pattern": "odd"})]),
               Reply(tool_calls=[ToolCall("write_file", {"path": name, "content": "rewritten\n"})]),
               Reply(text="Handled the odd name."))
    engine = await make_engine(AGENT_APPROVAL="full-auto")
    await run(engine, "look at the odd file")
    assert status(engine) == "done"
    assert [f.status for f in of(engine, "tool_call_finished")] == ["ok"] * 4
    with open(odd, "rb") as handle:
        assert handle.read() == b"rewritten\n"
    await still_usable(engine, server)
