"""What the real model (Qwen2.5-Coder-1.5B on llama-server, tests/realmodel) taught us, replayed on scripted servers.

Each test pins one behaviour seen on the real model (docs/REALMODEL.md) so it stays fixed without the
7-minute setup. Tests marked xfail(strict=True) document a problem whose product fix is proposed in
docs/REALMODEL.md: when the fix lands they XPASS, pytest reports that as a failure, and the marker goes.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import agent_bin
from tests.fakes.model_server import Reply, ScriptedModelServer, ToolCall

GOAL = "Create the file hello.py with write_file. It must print exactly: Hello, world!"
HELLO = {"path": "hello.py", "content": "print('Hello, world!')"}


def agent_run(env: dict[str, str], *args: str, timeout: float = 120) -> tuple[subprocess.CompletedProcess[str],
                                                                                list[dict[str, Any]]]:
    proc = subprocess.run([agent_bin(), "run", "--json", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc, events


@pytest.fixture
def small_model_env(agent_env: dict[str, str]) -> dict[str, str]:
    """The settings the real-model tier runs with: an 8k model, short replies, no review round."""
    return {**agent_env, "AGENT_MAX_TOKENS": "768", "AGENT_TEMPERATURE": "0", "AGENT_REVIEW_ROUNDS": "0",
            "AGENT_MAX_TURNS": "10"}


# --------------------------------------------------------------------------- requests


def test_every_model_request_carries_max_tokens_and_temperature(model_server: ScriptedModelServer,
                                                                 small_model_env: dict[str, str],
                                                                 workspace: Path) -> None:
    """Without max_tokens the 1.5B model can emit newlines until the context is full (research 3.1)."""
    model_server.add(Reply(tool_calls=[ToolCall("write_file", HELLO)]), Reply(text="Created hello.py."))
    proc, _ = agent_run(small_model_env, "--approval", "full-auto", GOAL)
    assert proc.returncode == 0, proc.stderr
    assert len(model_server.requests) == 2
    for request in model_server.requests:
        assert request.get("max_tokens", request.get("max_completion_tokens")) == 768, request.keys()
        assert request.get("temperature") == 0
        assert request.get("stream") is True


def test_first_request_fits_a_small_context(model_server: ScriptedModelServer, small_model_env: dict[str, str]
                                            ) -> None:
    """System prompt + tool schemas were 1,623 Qwen tokens (5.9k characters) on the real model: 20% of an 8k
    context, and 22 s of prefill on an idle 2-core CPU (200 s under load). Keep it from growing."""
    model_server.add(Reply(text="Nothing to do."))
    proc, _ = agent_run(small_model_env, "--approval", "full-auto", "say hi")
    assert proc.returncode == 0, proc.stderr
    first = model_server.requests[0]
    system = "".join(str(m.get("content")) for m in first["messages"] if m.get("role") == "system")
    tools = json.dumps(first.get("tools", []))
    assert len(system) + len(tools) <= 6500, (len(system), len(tools))


# --------------------------------------------------------------------------- stock template: ```json text calls


def _fence_run(model_server: ScriptedModelServer, env: dict[str, str], answer: str
               ) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    # Exactly what the model printed with its stock template: a pretty-printed call in a ```json fence,
    # finish_reason "stop", streamed token by token.
    model_server.add(Reply.text_tool_call("write_file", HELLO, style="json_fence", chunk_size=3),
                     Reply(text=answer))
    return agent_run(env, "--approval", "full-auto", GOAL)


def test_stock_template_fenced_call_runs_end_to_end(model_server: ScriptedModelServer,
                                                    small_model_env: dict[str, str], workspace: Path) -> None:
    proc, events = _fence_run(model_server, small_model_env, "Created hello.py.")
    assert proc.returncode == 0, proc.stderr
    assert (workspace / "hello.py").read_text() == HELLO["content"]
    finished = [(e["tool"], e["status"]) for e in events if e["type"] == "tool_call_finished"]
    assert finished == [("write_file", "ok")]
    assert events[-1]["type"] == "run_finished" and events[-1]["status"] == "done"
    assert events[-1]["summary"] == "Created hello.py."
    # The model's next turn saw the call as a real tool call and its result, not as its own text.
    second = model_server.requests[1]["messages"]
    assert any(m.get("role") == "tool" and "hello.py" in str(m.get("content")) for m in second)
    assert not any("```json" in str(m.get("content") or "") for m in second if m.get("role") == "assistant")


def test_stock_template_fenced_call_is_not_streamed_as_answer_text(model_server: ScriptedModelServer,
                                                                   small_model_env: dict[str, str]) -> None:
    proc, events = _fence_run(model_server, small_model_env, "Created hello.py.")
    assert proc.returncode == 0, proc.stderr
    streamed = "".join(e["text"] for e in events if e["type"] == "assistant_delta")
    assert "```json" not in streamed and '"arguments"' not in streamed, streamed
    assert [e["text"] for e in events if e["type"] == "assistant_message"] == ["Created hello.py."]


def test_echoed_tool_response_tags_are_not_the_summary(model_server: ScriptedModelServer,
                                                       small_model_env: dict[str, str]) -> None:
    """With the stock Hermes template the model answered the tool result by echoing it in its wrapper."""
    proc, events = _fence_run(model_server, small_model_env,
                              "<tool_response>\ncreated hello.py (1 line)\n</tool_response>")
    assert proc.returncode == 0, proc.stderr
    assert events[-1]["summary"] == "created hello.py (1 line)"


# --------------------------------------------------------------------------- doctor against llama-server

# What llama-server (llama.cpp b10434, `-c 8192 -a qwen2.5-coder-1.5b-instruct`) answered, trimmed.
LLAMA_MODELS = {"models": [{"name": "qwen2.5-coder-1.5b-instruct", "model": "qwen2.5-coder-1.5b-instruct"}],
                "object": "list",
                "data": [{"id": "qwen2.5-coder-1.5b-instruct", "aliases": ["qwen2.5-coder-1.5b-instruct"], "tags": [],
                          "object": "model", "created": 1795292451, "owned_by": "llamacpp",
                          "meta": {"vocab_type": 2, "n_vocab": 151936, "n_ctx": 8192, "n_ctx_train": 32768,
                                   "n_embd": 1536, "n_params": 1777088000, "size": 1111370240,
                                   "ftype": "Q4_K - Medium"}}]}
LLAMA_PROPS = {"default_generation_settings": {"n_ctx": 8192}, "total_slots": 1,
               "model_alias": "qwen2.5-coder-1.5b-instruct", "build_info": "b10434"}


class _LlamaStub(BaseHTTPRequestHandler):
    props = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        body: Any = {"status": "ok"} if path == "/health" else LLAMA_MODELS if path == "/v1/models" else (
            LLAMA_PROPS if path == "/props" and self.props else None)
        data = json.dumps(body if body is not None else {"error": {"code": 404, "message": "File Not Found"}})
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data.encode())


@pytest.fixture(params=[True, False], ids=["with-props", "no-props"])
def llama_stub(request: pytest.FixtureRequest) -> Iterator[str]:
    handler = type("Handler", (_LlamaStub,), {"props": request.param})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_doctor_reports_llama_server_model_and_loaded_context(llama_stub: str, agent_env: dict[str, str]) -> None:
    # Without /props (a proxy in front of llama-server) meta.n_ctx is the loaded context; n_ctx_train (32768)
    # is what the model was trained with, not what the server allocated.
    env = {**agent_env, "OPENAI_BASE_URL": llama_stub}
    proc = subprocess.run([agent_bin(), "doctor", "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    checks = {c["name"]: c for c in json.loads(proc.stdout)}
    assert "llama.cpp" in checks["endpoint"]["detail"]
    assert checks["model"]["detail"] == "qwen2.5-coder-1.5b-instruct"
    assert checks["context window"]["ok"] and checks["context window"]["detail"].startswith("8192 tokens"), checks
