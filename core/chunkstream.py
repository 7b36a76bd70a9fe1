"""Streamed chat completions, read in network-sized batches: runs of text or argument deltas become one chunk.

A local server at full speed sends one SSE event per token, and the openai client builds a pydantic
`ChatCompletionChunk` for each (~0.3 ms of CPU apiece, 60 % of a 20,000-word answer's cost in the SDK). This
reader parses the same SSE bytes, and within each network read merges consecutive chunks that only extend
the same text field or the same tool call's arguments. Nothing waits for more data: a slow model's chunks
pass one by one as they arrive, exactly as before; a flood arrives in big reads and is parsed in big pieces.
Errors are the openai client's own (`APIError` for an error event, `APITimeoutError`, `APIConnectionError`).

Most of a flood is text chunks that differ only in their text: once one such chunk has been decoded, the next
ones are recognised by their raw JSON (the same bytes before and after one string literal) and only that
literal is read, instead of decoding and comparing the whole chunk again.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from json.decoder import scanstring
from typing import Any

import httpx2
from openai import APIConnectionError, APIError, APITimeoutError, AsyncStream
from openai.types.chat import ChatCompletionChunk

# Delta fields whose successive values are pieces of one string.
TEXT_FIELDS = ("content", "reasoning_content", "reasoning", "refusal")
# Top-level chunk fields that may change from chunk to chunk without meaning anything to the handler.
VOLATILE_FIELDS = frozenset({"created", "obfuscation", "system_fingerprint"})


def parse_events(buffer: bytes) -> tuple[list[str], bytes]:
    """The `data` of every complete SSE event in `buffer`, and the incomplete rest."""
    buffer = buffer.replace(b"\r\n", b"\n")
    carry = b""
    if buffer.endswith(b"\r"):  # maybe the first half of a CRLF split across reads
        buffer, carry = buffer[:-1], b"\r"
    buffer = buffer.replace(b"\r", b"\n")
    end = buffer.rfind(b"\n\n")
    if end < 0:
        return [], buffer + carry
    complete, rest = buffer[:end], buffer[end + 2:]
    events: list[str] = []
    for block in complete.split(b"\n\n"):
        data = [line[5:].removeprefix(b" ") for line in block.split(b"\n") if line.startswith(b"data:")]
        if data:
            events.append(b"\n".join(data).decode("utf-8", errors="replace"))
    return events, rest + carry


def _set_fields(mapping: dict[str, Any]) -> set[str]:
    return {key for key, value in mapping.items() if value is not None}


def _only_choice(chunk: dict[str, Any]) -> dict[str, Any] | None:
    choices = chunk.get("choices")
    if not isinstance(choices, list) or len(choices) != 1 or not isinstance(choices[0], dict):
        return None
    choice = choices[0]
    if _set_fields(choice) - {"index", "delta"} or not isinstance(choice.get("delta"), dict):
        return None  # a finish reason, logprobs or anything unknown ends a run
    return choice


def _only_call(delta: dict[str, Any]) -> dict[str, Any] | None:
    """The delta's one tool call, if it has exactly one."""
    calls = delta.get("tool_calls")
    if not isinstance(calls, list) or len(calls) != 1 or not isinstance(calls[0], dict):
        return None
    return calls[0]


def _argument_piece(delta: dict[str, Any]) -> tuple[int, str] | None:
    """(tool call index, arguments) when `delta` only continues one tool call's arguments."""
    call = _only_call(delta)
    if call is None:
        return None
    function = call.get("function")
    if _set_fields(call) - {"index", "function"} or not isinstance(function, dict):
        return None
    if _set_fields(function) != {"arguments"} or not isinstance(function["arguments"], str):
        return None
    if not isinstance(call.get("index"), int):
        return None
    return call["index"], function["arguments"]


def try_merge(into: dict[str, Any], chunk: dict[str, Any]) -> bool:
    """Append `chunk` to `into` when it only continues the same field; `into` is changed only on success."""
    if into.get("usage") is not None or chunk.get("usage") is not None:
        return False
    for key, value in chunk.items():
        if key != "choices" and key not in VOLATILE_FIELDS and value is not None and into.get(key) != value:
            return False
    first, second = _only_choice(into), _only_choice(chunk)
    if first is None or second is None or first.get("index") != second.get("index"):
        return False
    before, after = first["delta"], second["delta"]
    after_fields = _set_fields(after)
    if after_fields != _set_fields(before) - {"role"}:
        return False
    if len(after_fields) == 1 and (field := next(iter(after_fields))) in TEXT_FIELDS:
        if not isinstance(before[field], str) or not isinstance(after[field], str):
            return False
        before[field] += after[field]
        return True
    if after_fields == {"tool_calls"}:
        tail, start = _argument_piece(after), _only_call(before)
        if tail is None or start is None:
            return False
        function = start.get("function")
        if start.get("index") != tail[0] or not isinstance(function, dict):
            return False
        if not isinstance(function.get("arguments") or "", str):
            return False
        function["arguments"] = (function.get("arguments") or "") + tail[1]
        return True
    return False


def coalesce(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    merged: list[dict[str, Any]] = []
    for chunk in chunks:
        if not (merged and try_merge(merged[-1], chunk)):
            merged.append(chunk)
    return merged


_TEXT_KEY = {field: re.compile(rf'"{field}"\s*:\s*"') for field in TEXT_FIELDS}


class _TextRun:
    """The raw JSON of a text chunk just merged, split around its text: chunks that match it outside that
    string literal are the same chunk with other text, so they merge the same way (into the same field)."""

    def __init__(self, prefix: str, suffix: str, target: dict[str, Any], field: str) -> None:
        self.prefix = prefix
        self.suffix = suffix
        self.target = target
        self.field = field

    @classmethod
    def after_merge(cls, data: str, chunk: dict[str, Any], target: dict[str, Any]) -> _TextRun | None:
        """The run `chunk` (decoded from `data`, merged into `target`) starts, if it is one text field only."""
        choice = _only_choice(chunk)
        if choice is None:
            return None
        fields = _set_fields(choice["delta"])
        if len(fields) != 1 or (field := next(iter(fields))) not in TEXT_FIELDS:
            return None
        keys = list(_TEXT_KEY[field].finditer(data))
        if len(keys) != 1:  # the field's name must say where its value is: once, as a key
            return None
        start = keys[0].end() - 1
        try:
            value, end = scanstring(data, start + 1)
        except ValueError:
            return None
        if value != choice["delta"][field]:
            return None
        return cls(data[:start], data[end:], target["choices"][0]["delta"], field)

    def extend(self, data: str) -> bool:
        """Append `data`'s text to the merged chunk when `data` is this run's chunk with other text."""
        prefix, suffix = self.prefix, self.suffix
        if len(data) < len(prefix) + len(suffix) + 2 or not (data.startswith(prefix) and data.endswith(suffix)):
            return False
        literal = data[len(prefix):len(data) - len(suffix)]
        if literal[0] != '"' or literal[-1] != '"':
            return False
        text = literal[1:-1]
        if "\\" in text or '"' in text or not text.isprintable():
            try:
                text, end = scanstring(literal, 1)
            except ValueError:
                return False
            if end != len(literal):
                return False
        self.target[self.field] += text
        return True


def coalesce_events(events: list[str], decode: Callable[[str], dict[str, Any]]) -> list[dict[str, Any]]:
    """`coalesce` over raw SSE data, reading only the text of chunks that continue the current text run."""
    merged: list[dict[str, Any]] = []
    run: _TextRun | None = None
    for data in events:
        if run is not None and run.extend(data):
            continue
        chunk = decode(data)
        if merged and try_merge(merged[-1], chunk):
            run = _TextRun.after_merge(data, chunk, merged[-1])
        else:
            merged.append(chunk)
            run = None
    return merged


class CoalescingChunkStream:
    """Stands in for the `AsyncStream[ChatCompletionChunk]` the SDK's stream handler iterates and closes."""

    def __init__(self, stream: AsyncStream[ChatCompletionChunk]) -> None:
        self._stream = stream
        self.response = stream.response
        self._iterator = self._chunks()

    def __aiter__(self) -> AsyncIterator[ChatCompletionChunk]:
        return self._iterator

    async def __anext__(self) -> ChatCompletionChunk:
        return await self._iterator.__anext__()

    async def close(self) -> None:
        try:
            await self._iterator.aclose()
        except RuntimeError:  # still running in a task being cancelled: its own `finally` closes the response
            pass
        await self._stream.close()

    async def _chunks(self) -> AsyncIterator[ChatCompletionChunk]:
        response = self.response
        buffer = b""
        done = False
        try:
            async for raw in self._bytes():
                if done:
                    continue  # drain the body after [DONE] so the connection can be reused
                events, buffer = parse_events(buffer + raw)
                for index, data in enumerate(events):
                    if data.startswith("[DONE]"):
                        done = True
                        events = events[:index]
                        break
                for chunk in coalesce_events(events, self._decode):
                    yield ChatCompletionChunk.construct(**chunk)
        finally:
            await response.aclose()

    async def _bytes(self) -> AsyncIterator[bytes]:
        try:
            async for raw in self.response.aiter_bytes():
                yield raw
        except httpx2.TimeoutException as err:
            raise APITimeoutError(request=self.response.request) from err
        except httpx2.RequestError as err:
            raise APIConnectionError(request=self.response.request) from err

    def _decode(self, data: str) -> dict[str, Any]:
        try:
            chunk = json.loads(data)
        except json.JSONDecodeError as err:
            raise APIError(f"the model server sent a stream event that is not JSON: {data[:200]!r}",
                           request=self.response.request, body=None) from err
        if not isinstance(chunk, dict):
            raise APIError(f"the model server sent a stream event that is not an object: {data[:200]!r}",
                           request=self.response.request, body=None)
        error = chunk.get("error")
        if error:
            message = error.get("message") if isinstance(error, dict) else None
            if not message or not isinstance(message, str):
                message = "An error occurred during streaming"
            raise APIError(message, request=self.response.request, body=error)
        return chunk
