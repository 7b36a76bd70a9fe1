"""Model access: the OpenAI-compatible client, endpoint discovery, error classification, `agent doctor` checks."""

from __future__ import annotations

import asyncio
import errno
import itertools
import json
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx2
import openai
from agents import ModelSettings, OpenAIChatCompletionsModel, OpenAIResponsesModel
from agents.models.interface import Model
from openai import AsyncOpenAI
from openai.types.responses import (
    ResponseCompletedEvent,
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseReasoningItem,
)
from openai.types.responses.response_reasoning_item import Summary

from core.chunkstream import CoalescingChunkStream
from core.config import Settings
from core.errors import STATE_DIR_HINT, EndpointError
from core.textcalls import recover_tool_calls
from core.tls import plain_http_context

YIELD_EVERY_S = 0.005

_stream_types_lock = threading.Lock()
_stream_types_built = False


def build_stream_types() -> None:
    """Build the validators of the pydantic types a chat-completions stream goes through, once per process.

    openai's types defer building their validators to first use: the first answer of a process built 22 of
    them on the event loop, a 0.3-0.5 s freeze of keys and screen while its first words arrived. Built here,
    in a thread, they cost the same once (about 8 MB, which is why not at start: an idle app never needs them).
    """
    global _stream_types_built
    with _stream_types_lock:
        if _stream_types_built:
            return
        from agents.models import chatcmpl_stream_handler
        from openai import _base_client
        from openai.types.chat import chat_completion_chunk, parsed_chat_completion
        from openai.types.responses import response_usage
        from pydantic import BaseModel

        # The handler's event and output types, the chunks, the usage details built on their own, and what
        # openai's client builds around a request (its parsed-completion and page types).
        modules = (chat_completion_chunk, chatcmpl_stream_handler, response_usage, parsed_chat_completion,
                   _base_client)
        for module in modules:
            for value in list(vars(module).values()):
                if isinstance(value, type) and issubclass(value, BaseModel) and not value.__pydantic_complete__:
                    value.model_rebuild()
        _stream_types_built = True


async def prepare_stream_types() -> None:
    """Build the stream's types in a thread (the event loop keeps serving keys); at once when already built."""
    if not _stream_types_built:
        await asyncio.to_thread(build_stream_types)

# Agent work needs room for the system prompt, tool schemas, files and command output.
MIN_CONTEXT_FOR_AGENT = 8192
RECOMMENDED_CONTEXT = 16384

# Local disk problems must never be reported as an unreachable model endpoint.
_STATE_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EDQUOT})

UNREACHABLE_HINT = (
    "start the model server and make it reachable from here: in LM Studio enable 'Serve on Local Network' "
    "(Developer tab) or run `lms server start --bind 0.0.0.0`; check that OPENAI_BASE_URL ends in /v1 "
    "(from a container the host is host.docker.internal)"
)


@dataclass
class EndpointInfo:
    """What the endpoint told us about itself."""

    base_url: str
    models: list[str] = field(default_factory=list)
    model: str | None = None
    context_window: int | None = None
    server: str = "openai-compatible"  # lmstudio | llama.cpp | openai | openai-compatible
    loaded: bool | None = None
    latency_ms: float = 0.0
    warnings: list[str] = field(default_factory=list)


def server_root(base_url: str) -> str:
    """`http://host:1234/v1` -> `http://host:1234` (LM Studio's /api/v0 and llama.cpp's /props live there)."""
    root = base_url.rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


def build_client(settings: Settings) -> AsyncOpenAI:
    # Short connect timeout: an unreachable endpoint must fail fast with a hint. Long read timeout: a local
    # model may JIT-load and prefill slowly on CPU. One retry only: a retried long prompt is paid twice.
    timeout = openai.Timeout(settings.request_timeout_s, connect=5.0)
    context = plain_http_context(settings.base_url)
    return AsyncOpenAI(
        base_url=settings.base_url,
        api_key=settings.api_key.get_secret_value(),
        timeout=timeout,
        max_retries=1,
        # The client openai builds by default, with CA certificates read only if TLS is ever used.
        http_client=None if context is None else openai.DefaultAsyncHttpxClient(
            base_url=settings.base_url, timeout=timeout, verify=context),
    )


def model_settings(settings: Settings) -> ModelSettings:
    # include_usage is required for usage on non-OpenAI URLs; max_tokens is always sent because small
    # models can otherwise emit newlines forever (research/local-llm.md 3.1).
    return ModelSettings(
        temperature=settings.temperature,
        include_usage=True,
        parallel_tool_calls=False,
        max_tokens=settings.max_tokens,
    )


_text_call_ids = itertools.count(1)


def rewrite_text_tool_calls(output: list[Any], tool_names: frozenset[str]) -> list[Any]:
    """Turn tool calls printed inside message text into function-call items; `<think>` into reasoning."""
    new_output: list[Any] = []
    for item in output:
        if not isinstance(item, ResponseOutputMessage):
            new_output.append(item)
            continue
        text = "".join(part.text for part in item.content if isinstance(part, ResponseOutputText))
        if not text:
            new_output.append(item)
            continue
        recovered = recover_tool_calls(text, tool_names)
        if recovered.reasoning:
            new_output.append(ResponseReasoningItem(
                id="__think__", type="reasoning",
                summary=[Summary(text=recovered.reasoning, type="summary_text")],
            ))
        if recovered.text != text.strip() or recovered.reasoning:
            if recovered.text:
                new_output.append(item.model_copy(update={"content": [
                    ResponseOutputText(text=recovered.text, type="output_text", annotations=[])
                ]}))
        else:
            new_output.append(item)
        for call in recovered.calls:
            new_output.append(ResponseFunctionToolCall(
                type="function_call", name=call.name, arguments=call.arguments,
                call_id=f"call_text_{int(time.time())}_{next(_text_call_ids)}", id="__fake_id__",
                status="completed",
            ))
    return new_output


def normalize_arguments(arguments: str, schema: dict[str, Any]) -> str:
    """Fill omitted optional arguments with their defaults and drop undeclared ones.

    The SDK only consults a tool's `needs_approval` policy when the raw arguments equal the validated
    ones; otherwise it asks the operator (failing closed). Small models routinely omit optional
    arguments, which would turn every policy-allowed command into an approval prompt.
    """
    try:
        args = json.loads(arguments or "{}")
    except json.JSONDecodeError:
        return arguments
    props = schema.get("properties")
    if not isinstance(args, dict) or not isinstance(props, dict):
        return arguments
    normalized = {k: v for k, v in args.items() if k in props}
    for name, spec in props.items():
        if name in normalized or not isinstance(spec, dict):
            continue
        if "default" in spec:
            normalized[name] = spec["default"]
        elif any(isinstance(alt, dict) and alt.get("type") == "null" for alt in spec.get("anyOf", [])):
            normalized[name] = None
    # ASCII escapes keep lone surrogates (non-UTF-8 file names) encodable in the next request.
    return arguments if normalized == args else json.dumps(normalized)


def normalize_output(output: list[Any], tools: Any) -> list[Any]:
    """Recover text tool calls, then normalize every function call's arguments to its tool's schema."""
    schemas = {getattr(t, "name", ""): getattr(t, "params_json_schema", None) for t in tools or []}
    out = rewrite_text_tool_calls(output, frozenset(n for n in schemas if n))
    for i, item in enumerate(out):
        if not isinstance(item, ResponseFunctionToolCall):
            continue
        schema = schemas.get(item.name)
        fixed = _ascii_arguments(item.arguments)
        if isinstance(schema, dict):
            fixed = normalize_arguments(fixed, schema)
        if fixed != item.arguments:
            out[i] = item.model_copy(update={"arguments": fixed})
    return out


def _ascii_arguments(arguments: str) -> str:
    """Decoded surrogate escapes (a non-UTF-8 file name) would make the next request unencodable: re-escape them."""
    # Either raw surrogates or JSON escapes of them (`\udce9`), which decode to surrogates in the SDK.
    if "\\ud" not in arguments.lower() and not any("\ud800" <= c <= "\udfff" for c in arguments):
        return arguments
    def escape(value: Any) -> Any:
        if isinstance(value, str):  # the same `\xNN` form list_dir shows; the workspace maps it back
            return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        if isinstance(value, dict):
            return {escape(k): escape(v) for k, v in value.items()}
        if isinstance(value, list):
            return [escape(v) for v in value]
        return value

    try:
        return json.dumps(escape(json.loads(arguments)))
    except json.JSONDecodeError:
        return escape(arguments)


class RecoveringChatCompletionsModel(OpenAIChatCompletionsModel):
    """Chat Completions model that recovers tool calls a local model printed as text."""

    async def get_response(self, *args: Any, **kwargs: Any) -> Any:
        response = await super().get_response(*args, **kwargs)
        tools = args[3] if len(args) > 3 else kwargs.get("tools", [])
        response.output = normalize_output(list(response.output), tools)
        return response

    async def _fetch_response(self, *args: Any, **kwargs: Any) -> Any:
        result = await super()._fetch_response(*args, **kwargs)
        if isinstance(result, tuple) and isinstance(result[1], openai.AsyncStream):
            response, stream = result
            return response, CoalescingChunkStream(stream)
        return result

    async def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        tools = args[3] if len(args) > 3 else kwargs.get("tools", [])
        last_pause = time.monotonic()
        async for event in super().stream_response(*args, **kwargs):
            if isinstance(event, ResponseCompletedEvent):
                event.response.output = normalize_output(list(event.response.output), tools)
            yield event
            # A fast stream arrives in big socket reads whose chunks are parsed without ever awaiting: give
            # the event loop (keys, rendering) a turn every few milliseconds.
            if time.monotonic() - last_pause > YIELD_EVERY_S:
                await asyncio.sleep(0)
                last_pause = time.monotonic()


def build_model(settings: Settings, client: AsyncOpenAI, model_id: str) -> Model:
    if settings.use_chat_completions:
        return RecoveringChatCompletionsModel(model=model_id, openai_client=client)
    return OpenAIResponsesModel(model=model_id, openai_client=client)


def classify_error(exc: BaseException, settings: Settings | None = None) -> EndpointError:
    """Map a client/SDK exception to an EndpointError whose hint says what to do."""
    if isinstance(exc, EndpointError):
        return exc
    base = settings.base_url if settings else "the endpoint"
    body = _error_text(exc)
    low = body.lower()
    status = getattr(exc, "status_code", None)
    if isinstance(exc, sqlite3.Error) or (isinstance(exc, OSError) and exc.errno in _STATE_ERRNOS):
        return EndpointError(f"cannot write the state directory: {exc}", kind="state_dir",
                             hint=STATE_DIR_HINT)
    if isinstance(exc, openai.APITimeoutError):
        return EndpointError(f"the model at {base} did not answer in time", kind="timeout",
                             hint="the model may still be loading or the prompt is long for this machine; "
                                  "retry, or use a smaller model")
    if isinstance(exc, (openai.APIConnectionError, httpx2.ConnectError, ConnectionError, OSError)):
        return EndpointError(f"cannot reach the model endpoint {base}", kind="unreachable",
                             hint=UNREACHABLE_HINT)
    if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)) or status in (401, 403):
        return EndpointError(f"the endpoint {base} refused the API key ({status})", kind="auth", status=status,
                             hint="set OPENAI_API_KEY to a valid key (LM Studio: the token from 'Require "
                                  "Authentication', or turn that setting off)")
    if "no models loaded" in low or "model is not loaded" in low or "model not loaded" in low:
        return EndpointError("the endpoint has no model loaded", kind="model_not_loaded", status=status,
                             hint="load a model in LM Studio (`lms load <model>`) or enable Just-in-Time loading")
    if any(s in low for s in ("context length", "context window", "n_keep", "n_ctx", "context size",
                              "maximum context", "context_length_exceeded", "too many tokens")):
        return EndpointError("the conversation no longer fits the model's context window", kind="context_overflow",
                             status=status,
                             hint="load the model with a larger context (LM Studio: `lms load <model> "
                                  "--context-length 32768`) or start a new session")
    if "model_not_found" in low or "invalid model identifier" in low or (
            status == 404 and "model" in low and "not found" in low):
        return EndpointError(f"the endpoint does not know the model{_model_suffix(settings)}", kind="model_not_found",
                             status=status, hint="set AGENT_MODEL to one of the ids `agent doctor` lists")
    if status == 404:
        return EndpointError(f"{base} answered 404 Not Found", kind="not_found", status=status,
                             hint="check that OPENAI_BASE_URL ends in /v1, e.g. http://host.docker.internal:1234/v1")
    if status is not None and status >= 500:
        return EndpointError(f"the model server failed ({status}): {body[:200]}", kind="server_error", status=status,
                             hint="retry; if it keeps failing, check the server's log (LM Studio: Developer tab)")
    if status is not None:
        return EndpointError(f"the endpoint rejected the request ({status}): {body[:300]}", kind="bad_request",
                             status=status, hint="check the model supports tool calling; see `agent doctor`")
    return EndpointError(f"model call failed: {type(exc).__name__}: {body[:300]}", kind="unknown",
                         hint="retry; run `agent doctor` to check the endpoint")


def _model_suffix(settings: Settings | None) -> str:
    return f" {settings.model!r}" if settings and settings.model else ""


def _error_text(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            return str(err.get("message") or err.get("code") or json.dumps(err))
        return str(err)
    if isinstance(body, str):
        return body
    return str(exc)


async def discover(settings: Settings, *, timeout_s: float = 5.0) -> EndpointInfo:
    """Ask the endpoint which models it serves and how large the loaded context is.

    Raises EndpointError (classified) when the endpoint cannot be reached or refuses us.
    """
    info = EndpointInfo(base_url=settings.base_url)
    headers = {"Authorization": f"Bearer {settings.api_key.get_secret_value()}"}
    root = server_root(settings.base_url)
    started = time.perf_counter()
    async with httpx2.AsyncClient(timeout=httpx2.Timeout(timeout_s, connect=min(timeout_s, 3.0)),
                                  headers=headers, verify=plain_http_context(settings.base_url) or True) as http:
        try:
            resp = await http.get(f"{settings.base_url}/models")
        except (httpx2.HTTPError, OSError) as exc:
            raise EndpointError(f"cannot reach the model endpoint {settings.base_url} ({type(exc).__name__})",
                                kind="unreachable", hint=UNREACHABLE_HINT) from exc
        info.latency_ms = (time.perf_counter() - started) * 1000
        if resp.status_code in (401, 403):
            raise EndpointError(f"the endpoint {settings.base_url} refused the API key ({resp.status_code})",
                                kind="auth", status=resp.status_code,
                                hint="set OPENAI_API_KEY to a valid key (LM Studio: the token from 'Require "
                                     "Authentication', or turn that setting off)")
        if resp.status_code == 404:
            raise EndpointError(f"{settings.base_url}/models answered 404", kind="not_found", status=404,
                                hint="check that OPENAI_BASE_URL ends in /v1, e.g. http://host.docker.internal:1234/v1")
        if resp.status_code >= 400:
            raise EndpointError(f"{settings.base_url}/models answered {resp.status_code}: {resp.text[:200]}",
                                kind="server_error", status=resp.status_code, hint="check the model server's log")
        try:
            data = resp.json().get("data", [])
        except (ValueError, AttributeError) as exc:
            raise EndpointError(f"{settings.base_url}/models did not return OpenAI-style JSON", kind="bad_response",
                                hint="check OPENAI_BASE_URL points at an OpenAI-compatible server") from exc
        entries = [d for d in data if isinstance(d, dict) and d.get("id")]
        info.models = [str(d["id"]) for d in entries]
        if "api.openai.com" in settings.base_url:
            info.server = "openai"
        if any(isinstance(d.get("meta"), dict) or d.get("owned_by") == "llamacpp" for d in entries):
            info.server = "llama.cpp"
        info.model = settings.model or (info.models[0] if info.models else None)
        if settings.model and info.models and settings.model not in info.models:
            info.warnings.append(f"AGENT_MODEL={settings.model!r} is not among the listed models "
                                 f"({', '.join(info.models[:8])})")
        await _context_window(http, root, info, entries)
    if not info.models:
        raise EndpointError(f"{settings.base_url} lists no models", kind="model_not_loaded",
                            hint="load a model in LM Studio (`lms load <model>`) or enable Just-in-Time loading")
    if info.context_window is not None and info.context_window < MIN_CONTEXT_FOR_AGENT:
        info.warnings.append(
            f"the loaded context window is {info.context_window} tokens; agent work needs at least "
            f"{MIN_CONTEXT_FOR_AGENT} (better {RECOMMENDED_CONTEXT}+): reload the model with a larger context, "
            f"e.g. `lms load {info.model} --context-length {RECOMMENDED_CONTEXT * 2}`")
    return info


async def _context_window(http: httpx2.AsyncClient, root: str, info: EndpointInfo,
                          entries: list[dict[str, Any]]) -> None:
    """LM Studio: /api/v0/models (loaded context). llama.cpp: /props n_ctx, else /v1/models meta."""
    if info.server in ("openai-compatible",):
        try:
            resp = await http.get(f"{root}/api/v0/models")
            if resp.status_code == 200:
                for d in resp.json().get("data", []):
                    if isinstance(d, dict) and d.get("id") == info.model:
                        info.server = "lmstudio"
                        info.loaded = d.get("state") == "loaded"
                        ctx = d.get("loaded_context_length") or d.get("max_context_length")
                        info.context_window = int(ctx) if ctx else None
                        if info.loaded is False:
                            info.warnings.append(f"model {info.model!r} is not loaded yet; LM Studio will load it "
                                                 "on first use (Just-in-Time), which can take a while")
                        return
        except (httpx2.HTTPError, ValueError, OSError):
            pass
    if info.server == "llama.cpp":
        try:
            resp = await http.get(f"{root}/props")
            if resp.status_code == 200:
                props = resp.json()
                n_ctx = (props.get("default_generation_settings") or {}).get("n_ctx") or props.get("n_ctx")
                if n_ctx:
                    info.context_window = int(n_ctx)
                    info.loaded = True
                    return
        except (httpx2.HTTPError, ValueError, OSError):
            pass
        for d in entries:
            meta = d.get("meta") if isinstance(d.get("meta"), dict) else {}
            # n_ctx is the loaded context; n_ctx_train only the model's maximum.
            ctx = meta.get("n_ctx") or meta.get("n_ctx_train")
            if d.get("id") == info.model and ctx:
                info.context_window = int(ctx)
