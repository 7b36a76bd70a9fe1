"""The scripted model server speaks the wire protocol the real `openai` client and the Agents SDK expect."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from agents import Agent, ModelSettings, OpenAIChatCompletionsModel, Runner, function_tool, set_tracing_disabled
from agents.exceptions import ModelTimeoutError
from openai import AsyncOpenAI

from tests.fakes.model_server import (
    EXHAUSTED,
    NO_MODELS_LOADED,
    Fault,
    Reply,
    ScriptedModelServer,
    ToolCall,
    item_from_dict,
)

REPO = Path(__file__).resolve().parents[2]
MESSAGES: list[dict[str, Any]] = [{"role": "user", "content": "hi"}]


@pytest.fixture
def server() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer() as srv:
        yield srv


ClientFactory = Callable[..., AsyncOpenAI]


@pytest.fixture
async def client_for() -> AsyncIterator[ClientFactory]:
    """Real `openai` clients for a server, closed after the test so no socket outlives its event loop."""
    made: list[AsyncOpenAI] = []

    def make(server: ScriptedModelServer, api_key: str = "x", **options: Any) -> AsyncOpenAI:
        made.append(AsyncOpenAI(base_url=server.url, api_key=api_key, max_retries=0, **options))
        return made[-1]

    yield make
    for client in made:
        await client.close()


def get_json(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


async def collect(client: AsyncOpenAI, **params: Any) -> list[Any]:
    stream = await client.chat.completions.create(model="scripted-model", messages=MESSAGES, stream=True,
                                                  **params)
    return [chunk async for chunk in stream]


async def test_streamed_text_reassembles_exactly(server: ScriptedModelServer, client_for: ClientFactory) -> None:
    client = client_for(server)
    text = "Hello, wörld!\nA second line with `code` and \"quotes\"."
    server.add(Reply(text=text, chunk_size=4))
    chunks = await collect(client)
    assert chunks[0].choices[0].delta.role == "assistant"
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(deltas) > 10
    assert "".join(deltas) == text
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert len({c.id for c in chunks}) == 1


async def test_streamed_tool_calls_reassemble_across_deltas(
        server: ScriptedModelServer, client_for: ClientFactory) -> None:
    client = client_for(server)
    args = {"path": "src/app.py", "start_line": 10, "note": "ünïcode"}
    server.add(Reply(tool_calls=[ToolCall("read_file", args, id="call_1"), ToolCall("list_dir", {"path": "."})]))
    chunks = await collect(client)
    calls: dict[int, dict[str, str]] = {}
    pieces = 0
    for chunk in chunks:
        for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            if delta.id:
                call["id"] = delta.id
            if delta.function and delta.function.name:
                call["name"] += delta.function.name
            if delta.function and delta.function.arguments:
                call["arguments"] += delta.function.arguments
                pieces += 1
    assert calls[0]["id"] == "call_1"
    assert calls[0]["name"] == "read_file"
    assert json.loads(calls[0]["arguments"]) == args
    assert calls[1]["name"] == "list_dir"
    assert calls[1]["id"]
    assert json.loads(calls[1]["arguments"]) == {"path": "."}
    assert pieces > 8
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_usage_chunk_only_when_requested(server: ScriptedModelServer, client_for: ClientFactory) -> None:
    client = client_for(server)
    server.add(Reply(text="one", usage=(120, 7)), Reply(text="two"))
    with_usage = await collect(client, stream_options={"include_usage": True})
    assert with_usage[-1].choices == []
    assert (with_usage[-1].usage.prompt_tokens, with_usage[-1].usage.completion_tokens) == (120, 7)
    assert with_usage[-1].usage.total_tokens == 127
    without = await collect(client)
    assert all(c.choices and c.usage is None for c in without)


async def test_reasoning_streams_before_content_in_either_field(
        server: ScriptedModelServer, client_for: ClientFactory) -> None:
    client = client_for(server)
    server.add(Reply(text="answer", reasoning="let me think", chunk_size=3),
               Reply(text="answer", reasoning="gpt-oss style", reasoning_field="reasoning"))
    for field_name, expected in (("reasoning_content", "let me think"), ("reasoning", "gpt-oss style")):
        chunks = await collect(client)
        order = [k for c in chunks for k in (c.choices[0].delta.model_dump(exclude_none=True) if c.choices else {})
                 if k in ("content", field_name)]
        assert order.index("content") > order.index(field_name)
        reasoning = "".join(getattr(c.choices[0].delta, field_name, None) or "" for c in chunks if c.choices)
        assert reasoning == expected


async def test_non_streamed_reply(server: ScriptedModelServer, client_for: ClientFactory) -> None:
    server.add(Reply(text="plain answer", reasoning="hmm"),
               Reply(tool_calls=[ToolCall("write_file", {"path": "a.txt", "content": "x"})]))
    client = client_for(server)
    first = await client.chat.completions.create(model="scripted-model", messages=MESSAGES)
    assert first.object == "chat.completion"
    assert first.choices[0].message.content == "plain answer"
    assert first.choices[0].message.model_extra["reasoning_content"] == "hmm"
    assert first.choices[0].finish_reason == "stop"
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens > 0
    second = await client.chat.completions.create(model="scripted-model", messages=MESSAGES)
    call = second.choices[0].message.tool_calls[0]
    assert (call.function.name, json.loads(call.function.arguments)) == ("write_file", {"path": "a.txt",
                                                                                       "content": "x"})
    assert second.choices[0].finish_reason == "tool_calls"


async def test_model_listings(client_for: ClientFactory) -> None:
    with ScriptedModelServer(model_id="qwen/qwen3-coder-30b", context_length=8192,
                             max_context_length=262144) as srv:
        models = await client_for(srv).models.list()
        assert [(m.id, m.object, m.owned_by) for m in models.data] == [
            ("qwen/qwen3-coder-30b", "model", "organization_owner")]
        root = srv.url.removesuffix("/v1")
        status, body = get_json(f"{root}/api/v0/models")
        assert status == 200
        [entry] = body["data"]
        assert entry["id"] == "qwen/qwen3-coder-30b"
        assert (entry["type"], entry["state"]) == ("llm", "loaded")
        assert (entry["loaded_context_length"], entry["max_context_length"]) == (8192, 262144)
        assert get_json(f"{root}/health") == (200, {"status": "ok"})
        status, body = get_json(f"{root}/api/tags")
        assert status == 404
        assert "Unexpected endpoint" in body["error"]["message"]
    with ScriptedModelServer(lmstudio_api=False) as plain:
        status, _ = get_json(f"{plain.url.removesuffix('/v1')}/api/v0/models")
        assert status == 404
        assert (await client_for(plain).models.list()).data[0].id == "scripted-model"


async def test_require_key(client_for: ClientFactory) -> None:
    with ScriptedModelServer([Reply(text="ok")], require_key="sekrit") as srv:
        with pytest.raises(openai.AuthenticationError) as info:
            await client_for(srv).models.list()
        assert info.value.status_code == 401
        with pytest.raises(openai.AuthenticationError):
            await client_for(srv).chat.completions.create(model="m", messages=MESSAGES)
        assert srv.remaining == 1
        good = client_for(srv, api_key="sekrit")
        answer = await good.chat.completions.create(model="m", messages=MESSAGES)
        assert answer.choices[0].message.content == "ok"


async def test_http_faults(server: ScriptedModelServer, client_for: ClientFactory) -> None:
    server.add(Fault("http_500"), Fault.no_models_loaded(), Fault.context_overflow(n_keep=13055, n_ctx=4096),
               Fault.model_not_found("o4-mini"), Fault("http_status", status=503, body="busy"))
    client = client_for(server)
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    with pytest.raises(openai.BadRequestError) as no_model:
        await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    assert no_model.value.body == NO_MODELS_LOADED
    with pytest.raises(openai.BadRequestError) as overflow:
        await client.chat.completions.create(model="m", messages=MESSAGES)
    # LM Studio's `error` is a plain string: the client keeps it in `.body`; str() says only "Error code: 400".
    assert "n_keep: 13055>= n_ctx: 4096" in overflow.value.body
    with pytest.raises(openai.BadRequestError) as unknown:
        await client.chat.completions.create(model="o4-mini", messages=MESSAGES)
    assert unknown.value.code == "model_not_found"
    with pytest.raises(openai.InternalServerError) as busy:
        await client.chat.completions.create(model="m", messages=MESSAGES)
    assert busy.value.status_code == 503
    assert server.errors == []


async def test_cut_stream_fails_while_iterating(server: ScriptedModelServer, client_for: ClientFactory) -> None:
    server.add(Fault("cut", reply=Reply(text="a long answer that never finishes", chunk_size=4), after_chunks=3))
    client = client_for(server)
    stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    received: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "a long a"


async def test_cut_non_streamed_body(server: ScriptedModelServer, client_for: ClientFactory) -> None:
    server.add(Fault("cut"))
    with pytest.raises(openai.APIConnectionError):
        await client_for(server).chat.completions.create(model="m", messages=MESSAGES)


async def test_hang_times_out_on_the_client(server: ScriptedModelServer, client_for: ClientFactory) -> None:
    server.add(Fault("hang"))
    with pytest.raises(openai.APITimeoutError):
        await client_for(server, timeout=0.3).chat.completions.create(model="m", messages=MESSAGES, stream=True)
    assert len(server.requests) == 1


async def test_slow_reply_streams_before_it_ends(server: ScriptedModelServer, client_for: ClientFactory) -> None:
    server.add(Reply(text="tokens that take a minute each", delay_s=60))
    stream = await client_for(server).chat.completions.create(model="m", messages=MESSAGES, stream=True)
    first = await stream.__anext__()
    assert first.choices[0].delta.role == "assistant"
    # Stopping the server releases the paused stream at once: the client sees the connection drop.
    server.stop()
    with pytest.raises(openai.APIConnectionError):
        async for _ in stream:
            pass


async def test_exhausted_script_fails_loudly(server: ScriptedModelServer, client_for: ClientFactory) -> None:
    server.add(Reply(text="only one"))
    client = client_for(server)
    await client.chat.completions.create(model="m", messages=MESSAGES)
    with pytest.raises(openai.InternalServerError) as info:
        await client.chat.completions.create(model="m", messages=MESSAGES)
    assert EXHAUSTED in str(info.value)
    assert server.errors == [EXHAUSTED]
    assert server.remaining == 0


async def test_responder_answers_from_the_conversation(client_for: ClientFactory) -> None:
    def respond(request: dict[str, Any]) -> Reply | Fault:
        last = request["messages"][-1]
        if last["role"] == "tool":
            return Reply(text=f"the tool said {last['content']}")
        if last["content"] == "fail":
            raise RuntimeError("unexpected input")
        return Reply(tool_calls=[ToolCall("echo", {"text": last["content"]})])

    with ScriptedModelServer([Reply(text="scripted first")], responder=respond) as srv:
        client = client_for(srv)
        first = await client.chat.completions.create(model="m", messages=MESSAGES)
        assert first.choices[0].message.content == "scripted first"
        second = await client.chat.completions.create(model="m", messages=MESSAGES)
        assert second.choices[0].message.tool_calls[0].function.name == "echo"
        tool_turn = [*MESSAGES, {"role": "tool", "tool_call_id": "c1", "content": "42"}]
        third = await client.chat.completions.create(model="m", messages=tool_turn)
        assert third.choices[0].message.content == "the tool said 42"
        with pytest.raises(openai.InternalServerError):
            await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "fail"}])
        assert srv.errors == ["scripted server: responder raised RuntimeError: unexpected input"]
        assert len(srv.requests) == 4


async def test_text_tool_calls_and_malformed_arguments(
        server: ScriptedModelServer, client_for: ClientFactory) -> None:
    client = client_for(server)
    server.add(Reply.text_tool_call("read_file", {"path": "README.md"}),
               Reply.text_tool_call("read_file", {"path": "README.md"}, style="json_fence"),
               Reply(tool_calls=[ToolCall("read_file", '{"path": "README.md"')]))
    hermes = "".join(c.choices[0].delta.content or "" for c in await collect(client) if c.choices)
    assert hermes.startswith("<tool_call>") and hermes.endswith("</tool_call>")
    assert json.loads(hermes.removeprefix("<tool_call>").removesuffix("</tool_call>")) == {
        "name": "read_file", "arguments": {"path": "README.md"}}
    fenced_chunks = await collect(client)
    assert fenced_chunks[-1].choices[0].finish_reason == "stop"
    fenced = "".join(c.choices[0].delta.content or "" for c in fenced_chunks if c.choices)
    assert json.loads(fenced.removeprefix("```json\n").removesuffix("\n```"))["name"] == "read_file"
    broken = "".join(d.function.arguments or "" for c in await collect(client) if c.choices
                     for d in c.choices[0].delta.tool_calls or [])
    assert broken == '{"path": "README.md"'


async def test_full_speed_long_answer(server: ScriptedModelServer) -> None:
    assert len(Reply.full_speed().text.split()) == 20_000
    reply = Reply.full_speed(words=4_000)  # the benchmark streams the full 20,000; this keeps the suite quick
    server.add(reply)
    # Raw HTTP: the `openai` client's per-chunk parsing would dominate; this checks the server's side.
    async with httpx2.AsyncClient() as http, http.stream(
            "POST", f"{server.url}/chat/completions", json={"model": "m", "messages": [], "stream": True}) as resp:
        lines = [line async for line in resp.aiter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    deltas = [json.loads(line.removeprefix("data: "))["choices"][0]["delta"] for line in lines[:-1]]
    assert "".join(d.get("content") or "" for d in deltas) == reply.text
    assert max(len(d.get("content") or "") for d in deltas) == 5


def test_script_items_round_trip_through_dicts() -> None:
    items = [Reply(text="t", tool_calls=[ToolCall("f", {"a": 1}, id="c"), ToolCall("g", "{bad")],
                   reasoning="r", reasoning_field="reasoning", usage=(3, 4), chunk_size=2, delay_s=0.01),
             Fault("cut", reply=Reply(text="partial"), after_chunks=5), Fault.no_models_loaded(), Fault("hang")]
    for item in items:
        assert item_from_dict(json.loads(json.dumps(item.to_dict()))) == item


async def test_agents_sdk_runs_a_tool_round_trip(server: ScriptedModelServer, client_for: ClientFactory) -> None:
    set_tracing_disabled(True)
    seen: list[str] = []

    @function_tool
    def read_file(path: str) -> str:
        """Read a file from the workspace."""
        seen.append(path)
        return f"contents of {path}"

    server.add(Reply(tool_calls=[ToolCall("read_file", {"path": "README.md"}, id="call_rf")]),
               Reply(text="The README says hello.", chunk_size=5))
    model = OpenAIChatCompletionsModel(model="scripted-model", openai_client=client_for(server))
    agent = Agent(name="coder", instructions="Be brief.", model=model, tools=[read_file],
                  model_settings=ModelSettings(include_usage=True))
    result = Runner.run_streamed(agent, "What does the README say?")
    names = [e.name async for e in result.stream_events() if e.type == "run_item_stream_event"]
    assert names == ["tool_called", "tool_output", "message_output_created"]
    assert seen == ["README.md"]
    assert result.final_output == "The README says hello."
    assert result.context_wrapper.usage.requests == 2
    first, second = server.requests
    assert first["stream"] is True and first["tools"][0]["function"]["name"] == "read_file"
    tool_messages = [m for m in second["messages"] if m["role"] == "tool"]
    assert tool_messages == [{"role": "tool", "tool_call_id": "call_rf", "content": "contents of README.md"}]
    assert server.remaining == 0 and server.errors == []


SDK_FAULTS = [
    (Fault("http_500"), openai.InternalServerError),
    (Fault.no_models_loaded(), openai.BadRequestError),
    (Fault("cut", reply=Reply(text="partial answer"), after_chunks=3), openai.APIConnectionError),
    (Fault("hang"), ModelTimeoutError),
]


@pytest.mark.parametrize(("fault", "error"), SDK_FAULTS, ids=["http_500", "http_400", "cut", "hang"])
async def test_agents_sdk_surfaces_faults(server: ScriptedModelServer, fault: Fault,
                                          error: type[Exception], client_for: ClientFactory) -> None:
    set_tracing_disabled(True)
    server.add(fault)
    model = OpenAIChatCompletionsModel(model="scripted-model", openai_client=client_for(server))
    agent = Agent(name="coder", model=model, model_settings=ModelSettings(include_usage=True, timeout=0.3))
    result = Runner.run_streamed(agent, "hi")
    with pytest.raises(error):
        async for _ in result.stream_events():
            pass
    assert len(server.requests) == 1


async def test_agents_sdk_reports_malformed_arguments_to_the_model(
        server: ScriptedModelServer, client_for: ClientFactory) -> None:
    set_tracing_disabled(True)

    @function_tool
    def read_file(path: str) -> str:
        """Read a file from the workspace."""
        raise AssertionError("never called with broken arguments")

    server.add(Reply(tool_calls=[ToolCall("read_file", '{"path": "README.md"', id="call_bad")]),
               Reply(text="Sorry, retrying later."))
    model = OpenAIChatCompletionsModel(model="scripted-model", openai_client=client_for(server))
    result = await Runner.run(Agent(name="coder", model=model, tools=[read_file]), "read it")
    assert result.final_output == "Sorry, retrying later."
    [tool_message] = [m for m in server.requests[1]["messages"] if m["role"] == "tool"]
    assert tool_message["tool_call_id"] == "call_bad"
    assert "error" in tool_message["content"].lower()


def test_cli_serves_a_script_file(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps([Reply(text="from the file").to_dict(), Fault("http_500").to_dict()]))
    command = [sys.executable, "-m", "tests.fakes.model_server", "--port", "0", "--script", str(script),
               "--print-url", "--model-id", "cli-model"]
    with subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().strip()
            assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
            status, body = get_json(f"{url}/models")
            assert status == 200
            assert body["data"][0]["id"] == "cli-model"
            request = urllib.request.Request(
                f"{url}/chat/completions", method="POST", headers={"Content-Type": "application/json"},
                data=json.dumps({"model": "cli-model", "messages": MESSAGES}).encode())
            with urllib.request.urlopen(request) as resp:
                assert json.loads(resp.read())["choices"][0]["message"]["content"] == "from the file"
        finally:
            proc.terminate()
        assert proc.wait(timeout=10) == 0
