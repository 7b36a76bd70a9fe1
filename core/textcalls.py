"""Recover tool calls that a local model printed as text, and split `<think>` reasoning from answers.

Small local models (and LM Studio when its parser fails) often return a tool call inside the message
content: Hermes ``<tool_call>{...}</tool_call>``, Qwen3-Coder ``<function=...>`` XML, LM Studio's
``[TOOL_REQUEST]`` format, or a fenced ```json block. The SDK would treat that as the final answer;
we turn it back into real function calls, but only for names of tools the agent really has, so a
JSON example in an answer is never executed by accident.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

THINK_RE = re.compile(r"<think>(.*?)(?:</think>|\Z)", re.DOTALL)

_TOOL_RESPONSE_RE = re.compile(r"</?tool_response>")
_HERMES_RE = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|\Z)", re.DOTALL)
_LMSTUDIO_RE = re.compile(r"\[TOOL_REQUEST\]\s*(.*?)\s*(?:\[END_TOOL_REQUEST\]|\Z)", re.DOTALL)
_FENCE_RE = re.compile(r"```(?:json|tool_call|tool)?\s*\n(.*?)\n?```", re.DOTALL)
_XML_FUNC_RE = re.compile(r"<function=([\w.\-]+)>(.*?)(?:</function>|\Z)", re.DOTALL)
_XML_PARAM_RE = re.compile(r"<parameter=([\w.\-]+)>\n?(.*?)\n?</parameter>", re.DOTALL)


@dataclass(frozen=True)
class TextToolCall:
    name: str
    arguments: str  # JSON object text


@dataclass
class Recovered:
    """What a message's text really contained."""

    text: str
    calls: list[TextToolCall] = field(default_factory=list)
    reasoning: str = ""


# Where a tool call printed as text may begin: streamed text from here on is held back until the turn ends.
CALL_MARKERS = ("```json", "```tool", "<tool_call>", "[TOOL_REQUEST]", "<function=")


def streamable_prefix(answer: str) -> str:
    """The part of a streaming answer that can be shown now: never the start of a possible text tool call."""
    if answer.lstrip().startswith(("{", "[")):
        return ""  # a bare JSON call; shown (or executed) when the turn ends
    cut = len(answer)
    for marker in CALL_MARKERS:
        at = answer.find(marker)
        if at != -1:
            cut = min(cut, at)
        for n in range(len(marker) - 1, 0, -1):  # a marker still arriving at the very end
            if answer.endswith(marker[:n]):
                cut = min(cut, len(answer) - n)
                break
    return answer[:cut]


def split_think(text: str) -> tuple[str, str]:
    """Return (answer, reasoning): `<think>...</think>` blocks are reasoning, never the answer."""
    if "<think>" not in text:
        if "</think>" in text:  # the opening tag was in the prompt template: everything before is reasoning
            head, _, tail = text.partition("</think>")
            return tail.strip(), head.strip()
        return text, ""
    reasoning = "\n".join(m.strip() for m in THINK_RE.findall(text))
    answer = THINK_RE.sub("", text).strip()
    return answer, reasoning


def _loads(blob: str) -> Any:
    blob = blob.strip()
    try:
        return json.loads(blob)
    except json.JSONDecodeError:
        # Models often append a stray closing brace or text after the object: take the first object.
        try:
            obj, _ = json.JSONDecoder().raw_decode(blob)
            return obj
        except json.JSONDecodeError:
            return None


def _call_from_obj(obj: Any, tools: frozenset[str]) -> TextToolCall | None:
    if not isinstance(obj, dict):
        return None
    if "function" in obj and isinstance(obj["function"], dict):  # OpenAI-shaped {"type":"function","function":{...}}
        obj = obj["function"]
    name = obj.get("name") or obj.get("tool") or obj.get("tool_name")
    if not isinstance(name, str) or name not in tools:
        return None
    args = obj.get("arguments", obj.get("parameters", obj.get("args", {})))
    if isinstance(args, str):
        parsed = _loads(args)
        args = parsed if isinstance(parsed, dict) else None
    if not isinstance(args, dict):
        return None
    return TextToolCall(name=name, arguments=json.dumps(args))


def _objects(blob: str) -> Iterable[Any]:
    obj = _loads(blob)
    if isinstance(obj, list):
        yield from obj
    elif obj is not None:
        yield obj


def recover_tool_calls(text: str, tool_names: Iterable[str]) -> Recovered:
    """Find tool calls printed as text. Returns the text with the calls removed, and the calls."""
    tools = frozenset(tool_names)
    answer, reasoning = split_think(text)
    # Small models answer a tool result by echoing it in the template's wrapper: the wrapper is not the answer.
    answer = _TOOL_RESPONSE_RE.sub("", answer).strip() if "tool_response>" in answer else answer
    calls: list[TextToolCall] = []
    remaining = answer

    def take(pattern: re.Pattern[str], parse: Any) -> None:
        nonlocal remaining
        spans = []
        for m in pattern.finditer(remaining):
            found = parse(m)
            if found:
                calls.extend(found)
                spans.append(m.span())
        for start, end in reversed(spans):
            remaining = remaining[:start] + remaining[end:]

    def parse_json_group(m: re.Match[str]) -> list[TextToolCall]:
        return [c for obj in _objects(m.group(1)) if (c := _call_from_obj(obj, tools))]

    def parse_xml(m: re.Match[str]) -> list[TextToolCall]:
        name = m.group(1)
        if name not in tools:
            return []
        params = {k: _xml_value(v) for k, v in _XML_PARAM_RE.findall(m.group(2))}
        return [TextToolCall(name=name, arguments=json.dumps(params))]

    def parse_xml_inner(inner: str) -> list[TextToolCall]:
        return [c for m in _XML_FUNC_RE.finditer(inner) for c in parse_xml(m)]

    take(_HERMES_RE, lambda m: parse_json_group(m) or parse_xml_inner(m.group(1)))
    take(_LMSTUDIO_RE, parse_json_group)
    take(_XML_FUNC_RE, parse_xml)
    take(_FENCE_RE, parse_json_group)
    if not calls:
        stripped = remaining.strip()
        if stripped.startswith(("{", "[")):
            whole = [c for obj in _objects(stripped) if (c := _call_from_obj(obj, tools))]
            if whole:
                calls.extend(whole)
                remaining = ""

    remaining = re.sub(r"</?tool_call>", "", remaining).strip() if calls else answer
    return Recovered(text=remaining, calls=calls, reasoning=reasoning)


def _xml_value(raw: str) -> Any:
    raw = raw.strip()
    # Only structured values are decoded: a parameter "42" for a string field must stay a string.
    parsed = _loads(raw) if raw[:1] in "[{" else None
    return parsed if parsed is not None else raw
