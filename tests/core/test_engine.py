"""The engine in-process against the scripted server over real HTTP: streaming, tools, approvals, faults."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from core.config import Settings
from core.engine import Engine
from core.events import Event
from core.session_log import SessionStore
from tests.core.conftest import open_engine
from tests.fakes.model_server import Fault, Reply, ScriptedModelServer, ToolCall

EngineFactory = Callable[..., Any]


@pytest.fixture
async def make_engine(engine_settings: Callable[..., Settings]) -> AsyncIterator[EngineFactory]:
    engines: list[Engine] = []

    async def factory(**env: str) -> Engine:
        engine = await open_engine(engine_settings(**env))
        engines.append(engine)
        return engine

    yield factory
    for engine in engines:
        await engine.close()


def types(engine: Engine) -> list[str]:
    return [e.type for e in engine.history]


def of(engine: Engine, kind: str) -> list[Event]:
    return [e for e in engine.history if e.type == kind]


async def run(engine: Engine, goal: str) -> None:
    await engine.submit(goal)
    await engine.wait_idle()


async def test_streamed_answer_is_recorded_before_clients_see_it(make_engine: EngineFactory,
                                                                 server: ScriptedModelServer) -> None:
    server.add(Reply(text="Hello " * 200, chunk_size=3))
    engine = await make_engine()
    seen_on_disk: list[bool] = []

    def check(ev: Event) -> None:
        lines = engine.session.dir.joinpath("events.jsonl").read_text().splitlines()
        seen_on_disk.append(json.loads(lines[-1])["seq"] == ev.seq)

    engine.subscribe(check)
    await run(engine, "say hello")
    assert seen_on_disk and all(seen_on_disk)
    deltas = of(engine, "assistant_delta")
    message = of(engine, "assistant_message")[0]
    assert "".join(d.text for d in deltas).strip() == message.text.strip() == ("Hello " * 200).strip()
    assert len(deltas) < 200, "deltas are batched, not one event per token"
    assert of(engine, "run_finished")[-1].status == "done"
    usage = of(engine, "usage")[-1]
    assert usage.total_tokens > 0 and usage.context_limit == 32768


async def test_tool_call_printed_as_text_is_executed(make_engine: EngineFactory, server: ScriptedModelServer,
                                                     workspace: Path) -> None:
    (workspace / "README.md").write_text("# Frobnicator\n")
    server.add(Reply.text_tool_call("read_file", {"path": "README.md"}, style="json_fence"),
               Reply(text="The project is Frobnicator."))
    engine = await make_engine()
    await run(engine, "what is the project name?")
    finished = of(engine, "tool_call_finished")
    assert [(f.tool, f.status) for f in finished] == [("read_file", "ok")]
    assert "Frobnicator" in finished[0].output_preview
    answers = [m.text for m in of(engine, "assistant_message")]
    assert answers[-1] == "The project is Frobnicator."
    assert not any("```json" in a for a in answers), "the printed call never becomes the answer"


async def test_think_and_reasoning_content_are_reasoning_not_answer(make_engine: EngineFactory,
                                                                    server: ScriptedModelServer) -> None:
    server.add(Reply(text="<think>let me think</think>The answer is 4."),
               Reply(text="Five.", reasoning="counting fingers"))
    engine = await make_engine()
    await run(engine, "2+2?")
    await run(engine, "2+3?")
    assert [m.text for m in of(engine, "assistant_message")] == ["The answer is 4.", "Five."]
    reasoning = " ".join(r.text for r in of(engine, "reasoning"))
    assert "let me think" in reasoning and "counting fingers" in reasoning


@pytest.mark.parametrize(("fault", "tries"), [
    (Fault("http_500"), 2),  # the client retries a failed request once
    (Fault("cut", reply=Reply(text="partial answer " * 20), after_chunks=3), 1),  # a started stream is not retried
])
async def test_endpoint_faults_give_an_error_with_a_hint_and_the_session_goes_on(
        make_engine: EngineFactory, server: ScriptedModelServer, fault: Fault, tries: int) -> None:
    server.add(*[fault] * tries)
    engine = await make_engine()
    await run(engine, "first try")
    errors = of(engine, "error")
    assert errors and errors[-1].hint
    assert of(engine, "run_finished")[-1].status == "failed"
    server.add(Reply(text="Recovered."))
    await run(engine, "second try")
    assert of(engine, "run_finished")[-1].status == "done"
    assert of(engine, "assistant_message")[-1].text == "Recovered."


async def test_malformed_arguments_and_unknown_tools_go_back_to_the_model(make_engine: EngineFactory,
                                                                          server: ScriptedModelServer) -> None:
    server.add(Reply(tool_calls=[ToolCall("read_file", '{"path": "a.py"')]),
               Reply(tool_calls=[ToolCall("delete_everything", {"path": "/"})]),
               Reply(text="I could not do it."))
    engine = await make_engine()
    await run(engine, "do odd things")
    finished = of(engine, "tool_call_finished")
    assert len(finished) == 2 and all(not f.ok for f in finished)
    assert of(engine, "run_finished")[-1].status == "done"
    second_request_tools = [m for m in server.requests[1]["messages"] if m.get("role") == "tool"]
    assert second_request_tools, "the malformed call got an error result the model could read"


async def test_max_turns_is_reported_not_crashed_on(make_engine: EngineFactory, server: ScriptedModelServer,
                                                    workspace: Path) -> None:
    server.add(*[Reply(tool_calls=[ToolCall("list_dir", {"path": "."})]) for _ in range(3)])
    engine = await make_engine(AGENT_MAX_TURNS="2")
    await run(engine, "loop forever")
    assert of(engine, "run_finished")[-1].status == "max_turns"
    assert "AGENT_MAX_TURNS" in of(engine, "error")[-1].message + of(engine, "error")[-1].hint


async def test_cancel_interrupts_and_the_session_stays_usable(make_engine: EngineFactory,
                                                              server: ScriptedModelServer) -> None:
    server.add(Reply(text="slow " * 400, chunk_size=4, delay_s=0.01), Reply(text="Fast answer."))
    engine = await make_engine()
    await engine.submit("talk slowly")
    while not of(engine, "assistant_delta"):
        await asyncio.sleep(0.02)
    await engine.cancel()
    await engine.wait_idle()
    assert of(engine, "run_finished")[-1].status == "cancelled"
    await run(engine, "now quickly")
    assert of(engine, "run_finished")[-1].status == "done"


async def test_write_approval_always_rule_covers_the_next_write(make_engine: EngineFactory,
                                                                server: ScriptedModelServer, workspace: Path) -> None:
    server.add(Reply(tool_calls=[ToolCall("write_file", {"path": "src/a.py", "content": "a = 1\n"})]),
               Reply(tool_calls=[ToolCall("write_file", {"path": "src/b.py", "content": "b = 2\n"})]),
               Reply(text="Wrote both."))
    engine = await make_engine()
    await run(engine, "write two files")
    assert len(engine.pending_approvals) == 1
    request = engine.pending_approvals[0]
    assert request.kind == "write" and request.suggested_rule and "src/**" in request.suggested_rule
    await engine.approve(request.call_id, always=True)
    await engine.wait_idle()
    assert (workspace / "src/a.py").read_text() == "a = 1\n"
    assert (workspace / "src/b.py").read_text() == "b = 2\n"
    assert len(of(engine, "approval_requested")) == 1
    assert of(engine, "approval_decided")[0].decision == "always"
    assert of(engine, "run_finished")[-1].status == "done"


async def test_full_auto_writes_without_asking_and_still_refuses_hidden_paths(
        make_engine: EngineFactory, server: ScriptedModelServer, workspace: Path) -> None:
    server.add(Reply(tool_calls=[ToolCall("write_file", {"path": "ok.txt", "content": "fine\n"})]),
               Reply(tool_calls=[ToolCall("write_file", {"path": ".env", "content": "SECRET=1\n"})]),
               Reply(text="Done."))
    engine = await make_engine(AGENT_APPROVAL="full-auto")
    await run(engine, "write files")
    assert (workspace / "ok.txt").read_text() == "fine\n"
    assert not (workspace / ".env").exists()
    statuses = [(f.tool, f.status) for f in of(engine, "tool_call_finished")]
    assert statuses == [("write_file", "ok"), ("write_file", "refused")]
    assert not of(engine, "approval_requested")


async def test_undo_restores_the_file_and_tells_the_agent(make_engine: EngineFactory, server: ScriptedModelServer,
                                                          workspace: Path) -> None:
    (workspace / "app.py").write_text("v = 1\n")
    server.add(Reply(tool_calls=[ToolCall("write_file", {"path": "app.py", "content": "v = 2\n"})]),
               Reply(text="Changed."), Reply(text="Noted."))
    engine = await make_engine(AGENT_APPROVAL="auto-edit")
    await run(engine, "bump v")
    assert (workspace / "app.py").read_text() == "v = 2\n"
    await engine.undo()
    assert (workspace / "app.py").read_text() == "v = 1\n"
    restored = of(engine, "checkpoint_restored")[-1]
    assert restored.action == "undo" and "app.py" in restored.files
    await engine.redo()
    assert (workspace / "app.py").read_text() == "v = 2\n"
    await run(engine, "ok")
    last_user = [m for m in server.requests[-1]["messages"] if m.get("role") == "user"][-1]
    assert "redid" in str(last_user["content"]) and "app.py" in str(last_user["content"])


async def test_command_approval_shows_argv_parts_and_cwd(make_engine: EngineFactory, server: ScriptedModelServer,
                                                         workspace: Path) -> None:
    server.add(Reply(tool_calls=[ToolCall("run_command", {"command": "echo hi && rm -rf build"})]),
               Reply(text="Stopped."))
    engine = await make_engine()
    await run(engine, "clean")
    request = engine.pending_approvals[0]
    assert request.kind == "command"
    assert request.argv == [["echo", "hi"], ["rm", "-rf", "build"]]
    assert request.cwd == str(workspace.resolve())
    await engine.reject(request.call_id, "do not delete build")
    await engine.wait_idle()
    assert of(engine, "run_finished")[-1].status == "done"


async def test_allowed_command_with_omitted_optional_arguments_runs_without_asking(
        make_engine: EngineFactory, server: ScriptedModelServer, workspace: Path) -> None:
    # Small models omit optional arguments (timeout_s); that must not turn policy-allowed commands into prompts.
    server.add(Reply(tool_calls=[ToolCall("run_command", {"command": "echo hello"})]), Reply(text="It said hello."))
    engine = await make_engine(AGENT_ALLOWED_COMMANDS="echo")
    await run(engine, "say hello in the shell")
    assert not of(engine, "approval_requested")
    finished = of(engine, "tool_call_finished")[0]
    assert finished.status == "ok" and "hello" in finished.output_preview


async def test_planner_role_writes_the_plan_first(make_engine: EngineFactory, server: ScriptedModelServer) -> None:
    plan = {"steps": [{"title": "Look around", "status": "pending"}, {"title": "Answer", "status": "pending"}]}
    server.add(Reply(tool_calls=[ToolCall("update_plan", plan)]), Reply(text="The plan is ready."),
               Reply(text="Done as planned."))
    engine = await make_engine(AGENT_PLANNER="true")
    await run(engine, "do a planned thing")
    roles = [e.role for e in of(engine, "agent_changed")]
    assert roles == ["planner", "executor"]
    changes = [i for i, t in enumerate(types(engine)) if t == "agent_changed"]
    assert changes[0] < types(engine).index("plan_updated") < changes[1], "the plan comes before execution"
    assert server.requests[0]["tools"] and {t["function"]["name"] for t in server.requests[0]["tools"]} == {
        "read_file", "list_dir", "search_files", "update_plan"}, "the planner cannot change files"
    assert of(engine, "run_finished")[-1].status == "done"


async def test_failed_review_sends_the_executor_back_with_the_findings(
        make_engine: EngineFactory, server: ScriptedModelServer, workspace: Path) -> None:
    server.add(Reply(tool_calls=[ToolCall("write_file", {"path": "calc.py", "content": "def add(a, b):\n    "
                                                         "return a - b\n"})]),
               Reply(text="Wrote add()."),
               Reply(text="CHANGES NEEDED: add() subtracts instead of adding."),
               Reply(tool_calls=[ToolCall("write_file", {"path": "calc.py", "content": "def add(a, b):\n    "
                                                         "return a + b\n"})]),
               Reply(text="Fixed add()."),
               Reply(text="APPROVED: add() adds now."))
    engine = await make_engine(AGENT_APPROVAL="auto-edit", AGENT_REVIEW_ROUNDS="2")
    await run(engine, "write add()")
    reviews = of(engine, "review_finished")
    assert [(r.ok, r.round) for r in reviews] == [(False, 1), (True, 2)]
    assert "subtracts" in reviews[0].findings
    assert "return a + b" in (workspace / "calc.py").read_text()
    fix_request = server.requests[3]["messages"]
    assert any("subtracts instead of adding" in str(m.get("content")) for m in fix_request if m.get("role") == "user")
    assert of(engine, "run_finished")[-1].status == "done"
    assert server.requests[2]["tools"] and all(t["function"]["name"] not in ("write_file", "run_command")
                                               for t in server.requests[2]["tools"]), "the reviewer only reads"


async def test_review_rounds_are_bounded(make_engine: EngineFactory, server: ScriptedModelServer) -> None:
    server.add(Reply(tool_calls=[ToolCall("write_file", {"path": "x.txt", "content": "1\n"})]), Reply(text="Done."),
               Reply(text="CHANGES NEEDED: still wrong."))
    engine = await make_engine(AGENT_APPROVAL="auto-edit", AGENT_REVIEW_ROUNDS="1")
    await run(engine, "write x")
    assert [r.ok for r in of(engine, "review_finished")] == [False]
    finished = of(engine, "run_finished")[-1]
    assert finished.status == "done" and "still wrong" in finished.summary


async def test_fork_rebuilds_conversation_memory_from_the_log(make_engine: EngineFactory,
                                                              server: ScriptedModelServer, state_dir: Path,
                                                              workspace: Path) -> None:
    server.add(Reply(text="Your name is Ada."))
    engine = await make_engine()
    await run(engine, "My name is Ada. What is my name?")
    source_id = engine.session.id
    await engine.close()
    store = SessionStore(state_dir)
    fork = store.fork(source_id)
    settings = engine.settings
    forked = Engine(settings, fork, client="test")
    await forked.start()
    server.add(Reply(text="Still Ada."))
    await run(forked, "And now?")
    messages = server.requests[-1]["messages"]
    assert any("My name is Ada" in str(m.get("content")) for m in messages if m.get("role") == "user")
    assert any("Your name is Ada." in str(m.get("content")) for m in messages if m.get("role") == "assistant")
    await forked.close()
