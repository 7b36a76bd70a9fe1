"""A scripted OpenAI-compatible model server that plays the model over real HTTP, for tests and benchmarks."""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, get_args

ReasoningField = Literal["reasoning_content", "reasoning"]
FaultKind = Literal["http_500", "http_status", "cut", "hang"]
TextCallStyle = Literal["hermes", "json_fence"]

# Fixed so that recorded streams and snapshots are identical from run to run.
CREATED = 1_795_285_644
# Tool-call arguments are streamed in pieces this long, like llama-server's token-sized fragments.
ARGUMENT_PIECE = 7
# Bytes of SSE events gathered into one write when a reply streams with no delay.
STREAM_BATCH = 32 * 1024
EXHAUSTED = "scripted server: script exhausted"

NO_MODELS_LOADED = "No models loaded. Please load a model in the developer page or use the 'lms load' command."


def openai_error(message: str, *, type_: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None) -> dict[str, Any]:
    """The OpenAI error body: the `openai` client reads `error.message` from it."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


@dataclass
class ToolCall:
    """One function call the scripted model makes; a str `arguments` is sent verbatim (malformed JSON)."""

    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    id: str | None = None

    def arguments_text(self) -> str:
        return self.arguments if isinstance(self.arguments, str) else json.dumps(self.arguments)


@dataclass
class Reply:
    """One scripted model answer: streamed as SSE deltas, or returned whole when the request does not stream."""

    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    reasoning: str | None = None
    reasoning_field: ReasoningField = "reasoning_content"
    usage: tuple[int, int] | None = None  # (prompt, completion); None computes both from lengths
    finish_reason: str | None = None  # None: "tool_calls" when there are calls, else "stop"
    chunk_size: int = 8  # characters per content / reasoning delta
    delay_s: float = 0.0  # pause between chunks, for slow-token tests

    @classmethod
    def text_tool_call(cls, name: str, args: dict[str, Any], style: TextCallStyle = "hermes",
                       **fields: Any) -> Reply:
        """A model that prints its tool call as text instead of using `tool_calls` (finish_reason "stop")."""
        call = {"name": name, "arguments": args}
        if style == "hermes":
            text = f"<tool_call>\n{json.dumps(call)}\n</tool_call>"
        else:
            text = f"```json\n{json.dumps(call, indent=2)}\n```"
        return cls(text=text, **fields)

    @classmethod
    def full_speed(cls, words: int = 20_000) -> Reply:
        """A long answer in 5-character deltas with no pause: it streams as fast as the socket takes it."""
        vocabulary = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa")
        text = " ".join(vocabulary[i % len(vocabulary)] for i in range(words))
        return cls(text=text.replace("kappa ", "kappa\n"), chunk_size=5)

    def resolved_finish_reason(self) -> str:
        return self.finish_reason or ("tool_calls" if self.tool_calls else "stop")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["usage"] = list(self.usage) if self.usage else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Reply:
        fields = dict(data)
        fields["tool_calls"] = [ToolCall(**c) for c in fields.get("tool_calls", [])]
        if fields.get("usage") is not None:
            fields["usage"] = tuple(fields["usage"])
        return cls(**fields)


@dataclass
class Fault:
    """A scripted failure instead of an answer.

    `http_500`: status 500 with an OpenAI error body. `http_status`: any `status` and `body` (a dict is sent
    as JSON, a str verbatim). `cut`: stream the first `after_chunks` chunks of `reply`, then drop the
    connection without [DONE]. `hang`: read the request and never answer until the server stops.
    """

    kind: FaultKind
    status: int = 500
    body: dict[str, Any] | str | None = None
    reply: Reply | None = None
    after_chunks: int = 2

    def __post_init__(self) -> None:
        if self.kind not in get_args(FaultKind):
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {get_args(FaultKind)}")

    @classmethod
    def no_models_loaded(cls) -> Fault:
        """LM Studio with JIT loading off and nothing loaded: `error` is a plain string, status 400."""
        return cls("http_status", status=400, body={"error": NO_MODELS_LOADED})

    @classmethod
    def model_not_found(cls, model: str) -> Fault:
        return cls("http_status", status=400, body=openai_error(
            f'Invalid model identifier "{model}". Please specify a valid downloaded model.',
            param="model", code="model_not_found"))

    @classmethod
    def context_overflow(cls, n_keep: int = 13055, n_ctx: int = 4096) -> Fault:
        """LM Studio's answer when the prompt does not fit the loaded context."""
        return cls("http_status", status=400, body={"error": (
            f"The number of tokens to keep from the initial prompt is greater than the context length "
            f"(n_keep: {n_keep}>= n_ctx: {n_ctx}). Try to load the model with a larger context length, "
            f"or provide a shorter input.")})

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["reply"] = self.reply.to_dict() if self.reply else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fault:
        fields = dict(data)
        if fields.get("reply") is not None:
            fields["reply"] = Reply.from_dict(fields["reply"])
        return cls(**fields)


ScriptItem = Reply | Fault
Responder = Callable[[dict[str, Any]], ScriptItem]


def item_from_dict(data: dict[str, Any]) -> ScriptItem:
    """A script-file entry: faults carry a `kind`, replies do not."""
    return Fault.from_dict(data) if "kind" in data else Reply.from_dict(data)


def _pieces(text: str, size: int) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), max(1, size))]


def _usage(reply: Reply, request: dict[str, Any]) -> dict[str, int]:
    if reply.usage is not None:
        prompt, completion = reply.usage
    else:
        # About four characters a token, like the usual rule of thumb; never zero.
        prompt = max(1, len(json.dumps(request.get("messages", []))) // 4)
        produced = len(reply.text) + len(reply.reasoning or "") + sum(
            len(c.name) + len(c.arguments_text()) for c in reply.tool_calls)
        completion = max(1, produced // 4)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _call_id(call: ToolCall, number: int, index: int) -> str:
    return call.id or f"call_scripted_{number}_{index}"


def stream_chunks(reply: Reply, request: dict[str, Any], *, completion_id: str, model: str,
                  number: int) -> Iterator[dict[str, Any]]:
    """The `chat.completion.chunk` objects for `reply`, in the order llama-server and LM Studio send them."""

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {"id": completion_id, "object": "chat.completion.chunk", "created": CREATED, "model": model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}

    yield chunk({"role": "assistant", "content": None})
    if reply.reasoning:
        for piece in _pieces(reply.reasoning, reply.chunk_size):
            yield chunk({reply.reasoning_field: piece})
    for piece in _pieces(reply.text, reply.chunk_size):
        yield chunk({"content": piece})
    for index, call in enumerate(reply.tool_calls):
        pieces = _pieces(call.arguments_text(), ARGUMENT_PIECE) or [""]
        yield chunk({"tool_calls": [{"index": index, "id": _call_id(call, number, index), "type": "function",
                                     "function": {"name": call.name, "arguments": pieces[0]}}]})
        for piece in pieces[1:]:
            yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    yield chunk({}, reply.resolved_finish_reason())
    if (request.get("stream_options") or {}).get("include_usage"):
        yield {"id": completion_id, "object": "chat.completion.chunk", "created": CREATED, "model": model,
               "choices": [], "usage": _usage(reply, request)}


def completion(reply: Reply, request: dict[str, Any], *, completion_id: str, model: str,
               number: int) -> dict[str, Any]:
    """The non-streamed `chat.completion` object for `reply`."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.text if reply.text or not reply.tool_calls
                               else None}
    if reply.reasoning:
        message[reply.reasoning_field] = reply.reasoning
    if reply.tool_calls:
        message["tool_calls"] = [
            {"id": _call_id(c, number, i), "type": "function",
             "function": {"name": c.name, "arguments": c.arguments_text()}}
            for i, c in enumerate(reply.tool_calls)]
    return {"id": completion_id, "object": "chat.completion", "created": CREATED, "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": reply.resolved_finish_reason()}],
            "usage": _usage(reply, request)}


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 with chunked streams: a dropped connection is then visible to the client as an incomplete
    # body, which a close-delimited HTTP/1.0 stream could not show.
    protocol_version = "HTTP/1.1"
    # Every delta leaves at once, so slow-token tests really see tokens arrive one by one.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.owner._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: pytest output should show test failures, not access logs."""

    def do_GET(self) -> None:
        owner = self.server.owner
        path = self.path.split("?", 1)[0]
        if path == "/health":
            self._send_json(200, {"status": "ok"})
        elif not self._authorised():
            return
        elif path == "/v1/models":
            self._send_json(200, {"object": "list", "data": [
                {"id": owner.model_id, "object": "model", "owned_by": "organization_owner"}]})
        elif path == "/api/v0/models" and owner.lmstudio_api:
            self._send_json(200, {"object": "list", "data": [{
                "id": owner.model_id, "object": "model", "type": "llm", "publisher": "scripted",
                "arch": "qwen2", "compatibility_type": "gguf", "quantization": "Q4_K_M", "state": "loaded",
                "max_context_length": owner.max_context_length, "loaded_context_length": owner.context_length,
                "capabilities": ["tool_use"]}]})
        else:
            self._not_found()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path.split("?", 1)[0] != "/v1/chat/completions":
            self._not_found()
            return
        if not self._authorised():
            return
        try:
            request = json.loads(raw)
        except ValueError as exc:
            self._send_json(400, openai_error(f"request body is not JSON: {exc}"))
            return
        owner = self.server.owner
        number, item = owner._next(request)
        if isinstance(item, str):
            self._send_json(500, openai_error(item, type_="server_error"))
            return
        completion_id = f"chatcmpl-scripted-{number}"
        model = request.get("model") if isinstance(request.get("model"), str) else owner.model_id
        if isinstance(item, Fault):
            self._fault(item, request, completion_id=completion_id, model=model, number=number)
        elif request.get("stream"):
            self._stream(list(stream_chunks(item, request, completion_id=completion_id, model=model,
                                            number=number)), item.delay_s)
        else:
            self._send_json(200, completion(item, request, completion_id=completion_id, model=model,
                                            number=number))

    def _fault(self, fault: Fault, request: dict[str, Any], *, completion_id: str, model: str,
               number: int) -> None:
        if fault.kind == "http_500":
            self._send_json(500, fault.body if fault.body is not None
                            else openai_error("scripted server: internal error", type_="server_error"))
        elif fault.kind == "http_status":
            self._send_json(fault.status, fault.body if fault.body is not None else openai_error("scripted"))
        elif fault.kind == "hang":
            self.server.owner._stopping.wait()
            self.close_connection = True
        else:  # "cut"
            reply = fault.reply or Reply(text="this answer is cut off before it ends")
            if request.get("stream"):
                chunks = list(stream_chunks(reply, request, completion_id=completion_id, model=model,
                                            number=number))
                self._stream(chunks[:fault.after_chunks], reply.delay_s, finished=False)
            else:
                body = json.dumps(completion(reply, request, completion_id=completion_id, model=model,
                                             number=number)).encode()
                self._start(200, "application/json", len(body))
                self._write(body[:len(body) // 2])
            self._drop()

    def _authorised(self) -> bool:
        key = self.server.owner.require_key
        if key is None or self.headers.get("Authorization", "") == f"Bearer {key}":
            return True
        self._send_json(401, openai_error("Incorrect API key provided.", code="invalid_api_key"))
        return False

    def _not_found(self) -> None:
        self._send_json(404, openai_error(f"Unexpected endpoint or method. ({self.command} {self.path})",
                                          code="not_found"))

    def _start(self, status: int, content_type: str, length: int | None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if length is None:
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Cache-Control", "no-cache")
        else:
            self.send_header("Content-Length", str(length))
        self.end_headers()

    def _write(self, data: bytes) -> bool:
        """Send now; False when the client has gone (it cancelled or timed out), which is not an error."""
        try:
            self.wfile.write(data)
            return True
        except OSError:
            self.close_connection = True
            return False

    def _send_json(self, status: int, body: dict[str, Any] | str) -> None:
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        self._start(status, "application/json", len(data))
        self._write(data)

    def _stream(self, chunks: list[dict[str, Any]], delay_s: float, *, finished: bool = True) -> None:
        self._start(200, "text/event-stream", None)
        stopping = self.server.owner._stopping
        pending: list[bytes] = []
        size = 0
        for i, chunk in enumerate(chunks):
            if i and delay_s and stopping.wait(delay_s):
                self._drop()
                return
            pending.append(f"data: {json.dumps(chunk)}\n\n".encode())
            size += len(pending[-1])
            # Slow replies send every event on its own; at full speed, events go out in socket-sized
            # batches, as a real server's do once the client reads slower than it writes.
            if delay_s or size >= STREAM_BATCH:
                size = 0
                if not self._send_chunk(pending):
                    return
        if finished:
            pending.append(b"data: [DONE]\n\n")
            if self._send_chunk(pending):
                self._write(b"0\r\n\r\n")
        elif pending:
            self._send_chunk(pending)

    def _send_chunk(self, events: list[bytes]) -> bool:
        """One HTTP chunk holding `events`; empties the list."""
        data = b"".join(events)
        events.clear()
        return self._write(b"%x\r\n%s\r\n" % (len(data), data))

    def _drop(self) -> None:
        """Close the socket mid-response, as a crashed or killed server would."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], owner: ScriptedModelServer) -> None:
        self.owner = owner
        super().__init__(address, _Handler)


class ScriptedModelServer:
    """Plays the model: each chat completion request takes the next scripted item (or asks the responder)."""

    def __init__(self, script: list[ScriptItem] | None = None, *, model_id: str = "scripted-model",
                 context_length: int = 32768, max_context_length: int | None = None,
                 responder: Responder | None = None, require_key: str | None = None,
                 lmstudio_api: bool = True, port: int = 0) -> None:
        self.model_id = model_id
        self.context_length = context_length
        self.max_context_length = max_context_length or context_length
        self.responder = responder
        self.require_key = require_key
        self.lmstudio_api = lmstudio_api
        self._port = port
        self._script: deque[ScriptItem] = deque(script or [])
        self._requests: list[dict[str, Any]] = []
        self._errors: list[str] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> ScriptedModelServer:
        self._httpd = _HTTPServer(("127.0.0.1", self._port), self)
        # A short poll interval keeps stop() quick: shutdown() waits for the serving loop's next poll.
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,),
                                        name="scripted-model-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, release hanging requests and close every open connection."""
        if self._httpd is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join()
        self._httpd = None

    def __enter__(self) -> ScriptedModelServer:
        return self if self._httpd is not None else self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the scripted model server is not running")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every chat completion request body received so far, in order."""
        with self._lock:
            return list(self._requests)

    @property
    def errors(self) -> list[str]:
        """Requests the script could not answer (exhausted, or the responder raised)."""
        with self._lock:
            return list(self._errors)

    @property
    def remaining(self) -> int:
        with self._lock:
            return len(self._script)

    def add(self, *items: ScriptItem) -> None:
        with self._lock:
            self._script.extend(items)

    def _next(self, request: dict[str, Any]) -> tuple[int, ScriptItem | str]:
        """Record the request; return its number and what to answer, or an error message."""
        with self._lock:
            self._requests.append(request)
            number = len(self._requests)
            if self._script:
                return number, self._script.popleft()
        if self.responder is not None:
            try:
                return number, self.responder(request)
            except Exception as exc:  # the test's responder is broken: fail the request loudly and keep it
                message = f"scripted server: responder raised {type(exc).__name__}: {exc}"
        else:
            message = EXHAUSTED
        with self._lock:
            self._errors.append(message)
        return number, message

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)


def main(argv: list[str] | None = None) -> None:
    """Run the server as its own process (tmux tests, benchmarks) until SIGTERM or Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.model_server", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--script", type=Path, help="JSON list of reply / fault objects")
    parser.add_argument("--print-url", action="store_true", help="print the base URL as the first stdout line")
    parser.add_argument("--model-id", default="scripted-model")
    parser.add_argument("--context-length", type=int, default=32768)
    parser.add_argument("--require-key")
    parser.add_argument("--no-lmstudio-api", action="store_true", help="answer 404 on /api/v0/models")
    args = parser.parse_args(argv)
    script = [item_from_dict(d) for d in json.loads(args.script.read_text())] if args.script else []
    server = ScriptedModelServer(script, model_id=args.model_id, context_length=args.context_length,
                                 require_key=args.require_key, lmstudio_api=not args.no_lmstudio_api,
                                 port=args.port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with server:
        if args.print_url:
            print(server.url, flush=True)
        stop.wait()
    for message in server.errors:  # over-calls of a CLI script show up in the tmux test's log
        print(message, file=sys.stderr)


if __name__ == "__main__":
    main()
