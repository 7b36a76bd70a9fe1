"""The coalescing chunk reader: SSE parsing, merge rules, and the real SDK Runner over the scripted server."""

from __future__ import annotations

import json
from typing import Any

from agents import Agent, ModelSettings, RunConfig, Runner, function_tool
from hypothesis import given, settings
from hypothesis import strategies as st

from core.chunkstream import coalesce, coalesce_events, parse_events
from core.config import load_settings
from core.model import build_client, build_model
from tests.fakes.model_server import Reply, ScriptedModelServer, ToolCall


def chunk(delta: dict[str, Any], finish: str | None = None, **top: Any) -> dict[str, Any]:
    return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **top}


def call_start(index: int, name: str, arguments: str = "") -> dict[str, Any]:
    return chunk({"tool_calls": [{"index": index, "id": f"call_{index}", "type": "function",
                                  "function": {"name": name, "arguments": arguments}}]})


def call_args(index: int, arguments: str) -> dict[str, Any]:
    return chunk({"tool_calls": [{"index": index, "function": {"arguments": arguments}}]})


def pieces(chunks: list[dict[str, Any]]) -> list[tuple[str, Any, str]]:
    """What a stream handler accumulates, in order: (field, tool index, text), adjacent same keys joined."""
    out: list[tuple[str, Any, str]] = []

    def add(key: str, index: Any, text: str) -> None:
        if out and out[-1][:2] == (key, index):
            out[-1] = (key, index, out[-1][2] + text)
        else:
            out.append((key, index, text))

    for c in chunks:
        for choice in c["choices"]:
            for field, value in choice["delta"].items():
                if field == "tool_calls" and value:
                    for call in value:
                        if call.get("id"):
                            add("call", call["index"], f"{call['id']}:{call['function']['name']}")
                        add("args", call["index"], call["function"].get("arguments") or "")
                elif isinstance(value, str) and field != "role":
                    add(field, None, value)
            if choice.get("finish_reason"):
                add("finish", None, choice["finish_reason"])
        if c.get("usage"):
            add("usage", None, json.dumps(c["usage"]))
    return [p for p in out if p[2] or p[0] in ("args",)]


def test_sse_events_split_anywhere_are_parsed_once() -> None:
    stream = (b'data: {"a": 1}\r\n\r\n: keep-alive comment\n\ndata: {"b":\ndata: 2}\n\n'
              b"event: x\ndata: [DONE]\n\n")
    for cut in range(len(stream) + 1):
        first, rest = parse_events(stream[:cut])
        second, tail = parse_events(rest + stream[cut:])
        assert first + second == ['{"a": 1}', '{"b":\n2}', "[DONE]"], cut
        assert tail == b""


def test_text_runs_merge_and_boundaries_stay() -> None:
    chunks = [chunk({"role": "assistant", "content": None}), chunk({"reasoning_content": "th"}),
              chunk({"reasoning_content": "ink"}), chunk({"content": "Hel"}), chunk({"content": "lo"}),
              chunk({}, "stop"), {**chunk({}), "choices": [], "usage": {"prompt_tokens": 1}}]
    merged = coalesce(json.loads(json.dumps(chunks)))
    assert [c["choices"][0]["delta"] if c["choices"] else "usage" for c in merged] == [
        {"role": "assistant", "content": None}, {"reasoning_content": "think"}, {"content": "Hello"}, {}, "usage"]
    assert merged[3]["choices"][0]["finish_reason"] == "stop"


def test_tool_call_arguments_merge_per_call_only() -> None:
    chunks = [call_start(0, "read_file", '{"pa'), call_args(0, 'th": '), call_args(0, '"a"}'),
              call_start(1, "list_dir"), call_args(1, "{}"), call_args(0, "")]
    merged = coalesce(json.loads(json.dumps(chunks)))
    assert len(merged) == 3
    assert merged[0]["choices"][0]["delta"]["tool_calls"][0]["function"] == {"name": "read_file",
                                                                            "arguments": '{"path": "a"}'}
    assert merged[1]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] == "{}"


def test_a_changed_model_or_choice_index_is_never_merged() -> None:
    other_model = chunk({"content": "b"})
    other_model["model"] = "other"
    other_choice = chunk({"content": "c"})
    other_choice["choices"][0]["index"] = 1
    merged = coalesce([chunk({"content": "a"}), other_model, other_choice])
    assert len(merged) == 3


text = st.text(alphabet="ab{}\":é", max_size=4)
event = st.one_of(
    st.builds(lambda t: chunk({"content": t}), text),
    st.builds(lambda t: chunk({"reasoning_content": t}), text),
    st.builds(lambda t: chunk({"refusal": t}), text),
    st.builds(lambda i, t: call_start(i, "tool", t), st.integers(0, 2), text),
    st.builds(call_args, st.integers(0, 2), text),
    st.builds(lambda r: chunk({}, r), st.sampled_from(["stop", "tool_calls", "length"])),
    st.builds(lambda n: {**chunk({}), "choices": [], "usage": {"completion_tokens": n}}, st.integers(0, 9)),
    st.just(chunk({"role": "assistant", "content": None})),
)


@settings(max_examples=2000, deadline=None)
@given(st.lists(event, max_size=30))
def test_coalescing_never_changes_what_a_handler_accumulates(chunks: list[dict[str, Any]]) -> None:
    original = json.loads(json.dumps(chunks))
    merged = coalesce(json.loads(json.dumps(chunks)))
    assert pieces(merged) == pieces(original)
    assert len(merged) <= len(original)


raw_text = st.text(alphabet='ab"\\\n\t\u00e9\u00a0\u2028{}:,content', max_size=6)
raw_event = st.one_of(
    event,
    st.builds(lambda t: chunk({"content": t}), raw_text),
    st.builds(lambda t: chunk({"reasoning_content": t}), raw_text),
    st.builds(lambda t, n: chunk({"content": t}, created=n), raw_text, st.integers(1, 2)),
    st.builds(lambda t: {**chunk({"content": t}), "model": "content"}, raw_text),
)
formats = st.sampled_from([{}, {"separators": (",", ":")}, {"ensure_ascii": False}, {"indent": None},
                           {"separators": (", ", " : "), "ensure_ascii": False}])


@settings(max_examples=2000, deadline=None)
@given(st.lists(raw_event, max_size=40), formats)
def test_reading_only_the_text_of_a_run_merges_exactly_as_decoding_every_chunk(
        chunks: list[dict[str, Any]], dump: dict[str, Any]) -> None:
    raw = [json.dumps(c, **dump) for c in chunks]
    decoded: list[str] = []

    def decode(data: str) -> dict[str, Any]:
        decoded.append(data)
        return json.loads(data)

    assert coalesce_events(raw, decode) == coalesce([json.loads(data) for data in raw])


def test_a_run_of_text_chunks_is_decoded_once() -> None:
    raw = [json.dumps(chunk({"content": word})) for word in ["Hello", " wor", "ld", ' "q"', " \\ é\n"]]
    decoded: list[str] = []
    merged = coalesce_events(raw, lambda data: decoded.append(data) or json.loads(data))
    assert [m["choices"][0]["delta"]["content"] for m in merged] == ['Hello world "q" \\ é\n']
    assert len(decoded) == 2, "the second chunk starts the run; the rest are read as text only"


def _runner_setup(server: ScriptedModelServer, tmp_path: Any) -> tuple[Agent[Any], RunConfig]:
    env = {"HOME": str(tmp_path), "OPENAI_BASE_URL": server.url, "OPENAI_API_KEY": "k",
           "AGENT_WORKSPACE": str(tmp_path), "AGENT_STATE_DIR": str(tmp_path / "state")}
    configured = load_settings(env)
    model = build_model(configured, build_client(configured), "scripted-model")

    @function_tool
    def lookup(key: str) -> str:
        """Look a key up."""
        return f"value of {key}"

    agent = Agent(name="t", instructions="test", model=model, tools=[lookup],
                  model_settings=ModelSettings(temperature=0))
    return agent, RunConfig(tracing_disabled=True)


async def _stream(agent: Agent[Any], config: RunConfig) -> tuple[list[str], Any]:
    result = Runner.run_streamed(agent, "go", run_config=config, max_turns=4)
    deltas: list[str] = []
    async for ev in result.stream_events():
        if ev.type == "raw_response_event" and ev.data.type == "response.output_text.delta":
            deltas.append(ev.data.delta)
    return deltas, result


async def test_full_speed_stream_reaches_the_sdk_in_few_chunks_and_intact(tmp_path: Any) -> None:
    answer = "word " * 4000 + "END"
    with ScriptedModelServer([Reply(tool_calls=[ToolCall("lookup", {"key": "k" * 300})]),
                              Reply(text=answer, chunk_size=5)]) as server:
        agent, config = _runner_setup(server, tmp_path)
        deltas, result = await _stream(agent, config)
    assert "".join(deltas) == answer
    assert result.final_output == answer
    assert len(deltas) < len(answer) // 5 // 10  # 4,000 five-character SSE events arrive in socket-sized reads
    outputs = [item.output for item in result.new_items if item.type == "tool_call_output_item"]
    assert outputs == ["value of " + "k" * 300]


async def test_slow_stream_passes_every_chunk_as_it_arrives(tmp_path: Any) -> None:
    with ScriptedModelServer([Reply(text="one two three four five", chunk_size=4, delay_s=0.05)]) as server:
        agent, config = _runner_setup(server, tmp_path)
        deltas, result = await _stream(agent, config)
    assert deltas == ["one ", "two ", "thre", "e fo", "ur f", "ive"]
    assert result.final_output == "one two three four five"
