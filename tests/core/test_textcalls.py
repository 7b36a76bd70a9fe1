"""Tool calls printed as text are recovered for known tools only; `<think>` never reaches the answer."""

from __future__ import annotations

import json

from core.textcalls import recover_tool_calls, split_think

TOOLS = ["read_file", "write_file", "list_dir", "run_command"]


def args(call) -> dict:
    return json.loads(call.arguments)


def test_hermes_tool_call() -> None:
    r = recover_tool_calls('<tool_call>\n{"name": "read_file", "arguments": {"path": "a.py"}}\n</tool_call>', TOOLS)
    assert [(c.name, args(c)) for c in r.calls] == [("read_file", {"path": "a.py"})]
    assert r.text == ""


def test_json_fence_as_qwen_coder_prints_it() -> None:
    text = '```json\n{\n  "name": "read_file",\n  "arguments": {\n    "path": "README.md"\n  }\n}\n```'
    r = recover_tool_calls(text, TOOLS)
    assert [(c.name, args(c)) for c in r.calls] == [("read_file", {"path": "README.md"})]


def test_qwen3_coder_xml_and_lmstudio_formats() -> None:
    xml = ("<tool_call>\n<function=write_file>\n<parameter=path>\nhello.py\n</parameter>\n"
           "<parameter=content>\n42\n</parameter>\n</function>\n</tool_call>")
    r = recover_tool_calls(xml, TOOLS)
    assert [(c.name, args(c)) for c in r.calls] == [("write_file", {"path": "hello.py", "content": "42"})]
    r2 = recover_tool_calls('[TOOL_REQUEST]{"name": "list_dir", "arguments": {"path": "src"}}[END_TOOL_REQUEST]',
                            TOOLS)
    assert [(c.name, args(c)) for c in r2.calls] == [("list_dir", {"path": "src"})]


def test_bare_json_object_and_string_arguments() -> None:
    r = recover_tool_calls('{"name": "run_command", "arguments": "{\\"command\\": \\"pytest\\"}"}', TOOLS)
    assert [(c.name, args(c)) for c in r.calls] == [("run_command", {"command": "pytest"})]


def test_unknown_tool_names_and_plain_json_stay_text() -> None:
    text = 'Here is a package.json:\n```json\n{"name": "my-app", "version": "1.0.0"}\n```'
    r = recover_tool_calls(text, TOOLS)
    assert r.calls == []
    assert r.text == text
    r2 = recover_tool_calls('<tool_call>{"name": "delete_everything", "arguments": {}}</tool_call>', TOOLS)
    assert r2.calls == []


def test_text_around_a_call_is_kept() -> None:
    r = recover_tool_calls('I will read it.\n<tool_call>{"name": "read_file", "arguments": {"path": "x"}}'
                           '</tool_call>', TOOLS)
    assert r.text == "I will read it."
    assert len(r.calls) == 1


def test_think_blocks_are_reasoning_not_answer() -> None:
    assert split_think("<think>plan things</think>\nThe answer.") == ("The answer.", "plan things")
    assert split_think("reasoning only</think>answer") == ("answer", "reasoning only")
    assert split_think("<think>still thinking") == ("", "still thinking")
    r = recover_tool_calls('<think>read first</think><tool_call>{"name": "read_file", "arguments": '
                           '{"path": "a"}}</tool_call>', TOOLS)
    assert r.reasoning == "read first"
    assert r.calls and r.text == ""


def test_streaming_never_shows_the_start_of_a_text_tool_call() -> None:
    from core.textcalls import streamable_prefix

    assert streamable_prefix("I will write it.\n```json\n{\"name\"") == "I will write it.\n"
    assert streamable_prefix("Reading now. <tool_") == "Reading now. "
    assert streamable_prefix('{"name": "read_file"') == ""
    assert streamable_prefix("Plain answer, no calls.") == "Plain answer, no calls."
    # A fence at the very end could still become ```json: held back until more text (or the turn's end) comes.
    assert streamable_prefix("Code:\n```python\nprint(1)\n```") == "Code:\n```python\nprint(1)\n"
    assert streamable_prefix("Code:\n```python\nprint(1)\n```\nDone.") == "Code:\n```python\nprint(1)\n```\nDone."


def test_echoed_tool_response_wrapper_is_not_the_answer() -> None:
    r = recover_tool_calls("<tool_response>\ncreated hello.py (1 line)\n</tool_response>", TOOLS)
    assert r.text == "created hello.py (1 line)" and r.calls == []
