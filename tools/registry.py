"""The SDK function tools the model sees (SPEC section 4), thin wrappers over the plain tool functions.

Every wrapper re-checks the policy decision itself (defence in depth: the SDK only asks
`needs_approval`, it never refuses), counts the call against the run's budget, snapshots the
workspace before anything that changes it, and records an audit entry. Errors go back to the model
as text through `failure_error_function`; they never crash the run.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agents import FunctionTool, RunContextWrapper, function_tool
from agents.tool_context import ToolContext
from pydantic import BaseModel

from core.approvals import AlwaysAllowRule, Decision, decide
from core.audit import AuditLog
from core.checkpoints import CheckpointStore
from core.commands import parse_command
from core.config import ApprovalMode, Settings
from core.errors import AgentError, WorkspaceError
from core.events import Event, FileChanged, PlanUpdated
from core.policy import BudgetTracker, PolicyStore
from tools import files, git_tools, plan, shell
from tools.workspace import Workspace

LOCAL_TOOLS = ("read_file", "list_dir", "search_files", "write_file", "edit_file", "run_command",
               "update_plan", "git_status", "git_diff")
GUARDED_TOOLS = ("write_file", "edit_file", "run_command")
READ_ONLY_TOOLS = ("read_file", "list_dir", "search_files", "git_status", "git_diff")


@dataclass
class ToolRuntime:
    """Everything a tool call needs; the RunContext's `context`. Never serialized (rebuilt on resume)."""

    settings: Settings
    workspace: Workspace
    policies: PolicyStore
    checkpoints: CheckpointStore
    audit: AuditLog
    budget: BudgetTracker
    mode: ApprovalMode
    session_rules: list[AlwaysAllowRule] = field(default_factory=list)
    # Side effects of a call, published by the engine in log order when it sees the call's output.
    side_events: dict[str, list[Event]] = field(default_factory=dict)
    call_status: dict[str, str] = field(default_factory=dict)
    diffs: dict[str, str] = field(default_factory=dict)
    changed_files: bool = False
    # call id -> sha256 of the file content the operator approved a diff against ("absent": a new file).
    approved_bases: dict[str, str] = field(default_factory=dict)
    on_plan: Callable[[PlanUpdated], None] | None = None

    def decide(self, tool: str, args: dict[str, Any]) -> Decision:
        return decide(tool, args, self.policies.current, self.mode, tuple(self.session_rules),
                      workspace_root=self.workspace.root)

    def side_event(self, call_id: str, event: Event) -> None:
        self.side_events.setdefault(call_id, []).append(event)


def model_text(text: str) -> str:
    """Text the model can be sent: non-UTF-8 file names (lone surrogates) become escapes, never a crash."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def tool_error_text(ctx: RunContextWrapper[Any], error: Exception) -> str:
    """What the model reads when a tool fails: the real reason, so it can retry sensibly."""
    if isinstance(error, AgentError):
        return model_text(f"ERROR: {error.message}")
    return model_text(f"ERROR {type(error).__name__}: {error}")


def _start(ctx: ToolContext[ToolRuntime], tool: str, args: dict[str, Any]) -> tuple[ToolRuntime, Decision]:
    rt = ctx.context
    refusal = rt.budget.count_tool_call()
    if refusal:
        raise WorkspaceError(refusal)
    decision = rt.decide(tool, args)
    if decision.verdict == "deny":
        rt.call_status[ctx.tool_call_id] = "refused"
        rt.audit.record("tool_refused", tool=tool, call_id=ctx.tool_call_id, args=_short_args(args),
                        reason=decision.reason)
        raise WorkspaceError(f"refused by policy: {decision.reason}")
    return rt, decision


def _short_args(args: dict[str, Any]) -> dict[str, Any]:
    return {k: (v if not isinstance(v, str) or len(v) <= 300 else f"<{len(v)} chars>") for k, v in args.items()}


def _finish(rt: ToolRuntime, call_id: str, tool: str, args: dict[str, Any], started: float, *, ok: bool = True,
            **extra: Any) -> None:
    rt.call_status.setdefault(call_id, "ok" if ok else "failed")
    rt.audit.record("tool_call", tool=tool, call_id=call_id, args=_short_args(args), ok=ok,
                    duration_ms=round((time.perf_counter() - started) * 1000, 1), **extra)


@function_tool(failure_error_function=tool_error_text)
def read_file(ctx: ToolContext[ToolRuntime], path: str, start_line: int | None = None,
              end_line: int | None = None) -> str:
    """Read a text file of the workspace.

    Args:
        path: Path relative to the workspace root.
        start_line: First line to read (1-based), optional.
        end_line: Last line to read (inclusive), optional.
    """
    args = {"path": path, "start_line": start_line, "end_line": end_line}
    started = time.perf_counter()
    rt, _ = _start(ctx, "read_file", args)
    out = files.read_file(rt.workspace, path, start_line, end_line)
    _finish(rt, ctx.tool_call_id, "read_file", args, started)
    return model_text(out)


@function_tool(failure_error_function=tool_error_text)
def list_dir(ctx: ToolContext[ToolRuntime], path: str = ".") -> str:
    """List a directory of the workspace.

    Args:
        path: Directory relative to the workspace root; "." is the root.
    """
    started = time.perf_counter()
    rt, _ = _start(ctx, "list_dir", {"path": path})
    out = files.list_dir(rt.workspace, path)
    _finish(rt, ctx.tool_call_id, "list_dir", {"path": path}, started)
    return model_text(out)


@function_tool(failure_error_function=tool_error_text)
def search_files(ctx: ToolContext[ToolRuntime], pattern: str, path: str = ".", glob: str | None = None) -> str:
    """Search file contents with a regular expression.

    Args:
        pattern: Python regular expression to look for.
        path: Directory or file to search, relative to the workspace root.
        glob: Only search files whose path matches this glob, e.g. "**/*.py".
    """
    args = {"pattern": pattern, "path": path, "glob": glob}
    started = time.perf_counter()
    rt, _ = _start(ctx, "search_files", args)
    out = files.search_files(rt.workspace, pattern, path, glob)
    _finish(rt, ctx.tool_call_id, "search_files", args, started)
    return model_text(out)


def content_sha256(text: str | None) -> str:
    return "absent" if text is None else hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def _apply(ctx: ToolContext[ToolRuntime], tool: str, args: dict[str, Any], change: files.FileChange) -> str:
    rt = ctx.context
    approved = rt.approved_bases.pop(ctx.tool_call_id, None)
    if approved is not None and approved != content_sha256(change.old):
        raise WorkspaceError(f"'{change.path}' changed since this edit was approved (someone edited it meanwhile); "
                             "read it again and redo the edit")
    checkpoint = rt.checkpoints.snapshot(f"{tool} {change.path}", paths=[change.path])
    summary = files.apply_change(rt.workspace, change)
    rt.checkpoints.record_after()
    rt.changed_files = True
    rt.diffs[ctx.tool_call_id] = change.diff
    rt.side_event(ctx.tool_call_id, FileChanged(path=change.path, change="added" if change.created else "modified",
                                                source="agent", checkpoint=checkpoint))
    return model_text(summary)


async def _guarded_write_needs_approval(ctx: RunContextWrapper[ToolRuntime], params: dict[str, Any],
                                        call_id: str) -> bool:
    tool = "edit_file" if "old_text" in params else "write_file"
    return ctx.context.decide(tool, params).verdict == "ask"


async def _command_needs_approval(ctx: RunContextWrapper[ToolRuntime], params: dict[str, Any], call_id: str) -> bool:
    return ctx.context.decide("run_command", params).verdict == "ask"


@function_tool(failure_error_function=tool_error_text, needs_approval=_guarded_write_needs_approval)
def write_file(ctx: ToolContext[ToolRuntime], path: str, content: str) -> str:
    """Create or overwrite a file of the workspace with the full new content.

    Args:
        path: Path relative to the workspace root.
        content: The complete new content of the file.
    """
    args = {"path": path, "content": content}
    started = time.perf_counter()
    rt, _ = _start(ctx, "write_file", args)
    summary = _apply(ctx, "write_file", args, files.plan_write(rt.workspace, path, content))
    _finish(rt, ctx.tool_call_id, "write_file", args, started)
    return model_text(summary)


@function_tool(failure_error_function=tool_error_text, needs_approval=_guarded_write_needs_approval)
def edit_file(ctx: ToolContext[ToolRuntime], path: str, old_text: str, new_text: str,
              replace_all: bool = False) -> str:
    """Replace exact text in a file of the workspace.

    Args:
        path: Path relative to the workspace root.
        old_text: The exact text to replace, copied from read_file (include enough lines to be unique).
        new_text: The replacement text.
        replace_all: Replace every occurrence instead of exactly one.
    """
    args = {"path": path, "old_text": old_text, "new_text": new_text, "replace_all": replace_all}
    started = time.perf_counter()
    rt, _ = _start(ctx, "edit_file", args)
    summary = _apply(ctx, "edit_file", args, files.plan_edit(rt.workspace, path, old_text, new_text, replace_all))
    _finish(rt, ctx.tool_call_id, "edit_file", args, started)
    return model_text(summary)


def command_argv(command: str, shell_allowed: bool) -> list[str]:
    """How a judged command runs: as argv when it is one plain command, else through /bin/sh."""
    parsed = parse_command(command)
    if parsed.simple_argv is not None:
        return list(parsed.simple_argv)
    if not shell_allowed:
        raise WorkspaceError("this command needs a shell (operators, redirections or substitutions) and the "
                             "policy does not allow shell forms; run each command separately")
    return ["/bin/sh", "-c", command]


@function_tool(failure_error_function=tool_error_text, needs_approval=_command_needs_approval)
async def run_command(ctx: ToolContext[ToolRuntime], command: str, timeout_s: float | None = None) -> str:
    """Run a command in the workspace root (no interactive input). Output keeps the head and the tail.

    Args:
        command: The command line, e.g. "pytest -q" or "python hello.py".
        timeout_s: Seconds before the command is killed, optional.
    """
    args = {"command": command, "timeout_s": timeout_s}
    started = time.perf_counter()
    rt, _ = _start(ctx, "run_command", args)
    policy = rt.policies.current
    argv = command_argv(command, policy.shell_form != "deny")
    rt.checkpoints.snapshot(f"run_command {command[:80]}")
    result = await shell.run_process(argv, cwd=rt.workspace.root, limits=policy.limits, timeout_s=timeout_s,
                                     tools_dir=rt.settings.tools_dir)
    rt.checkpoints.record_after()
    rt.changed_files = True
    ok = result.exit_code == 0 and not result.timed_out
    rt.call_status[ctx.tool_call_id] = "ok" if ok else "failed"
    _finish(rt, ctx.tool_call_id, "run_command", args, started, ok=ok, argv=argv, cwd=str(rt.workspace.root),
            exit_code=result.exit_code, timed_out=result.timed_out, output_chars=result.output_chars)
    return model_text(shell.format_command_result(result))


class PlanStepArg(BaseModel):
    title: str
    status: str = "pending"


@function_tool(failure_error_function=tool_error_text)
def update_plan(ctx: ToolContext[ToolRuntime], steps: list[PlanStepArg], note: str | None = None) -> str:
    """Show the operator your plan and keep it current: call it first, then whenever a step changes.

    Args:
        steps: All steps, in order, each with a title and a status: pending, in_progress or done.
        note: Optional short note about the plan.
    """
    started = time.perf_counter()
    rt, _ = _start(ctx, "update_plan", {"steps": len(steps)})
    normalized, text = plan.normalize_plan([s.model_dump() for s in steps], note)
    event = PlanUpdated(steps=normalized, note=note)
    rt.side_event(ctx.tool_call_id, event)
    _finish(rt, ctx.tool_call_id, "update_plan", {"steps": len(steps)}, started)
    return text


@function_tool(failure_error_function=tool_error_text)
def git_status(ctx: ToolContext[ToolRuntime]) -> str:
    """Show the git status of the workspace (branch, staged, unstaged and untracked files)."""
    started = time.perf_counter()
    rt, _ = _start(ctx, "git_status", {})
    out = git_tools.git_status(rt.workspace.root, hidden=rt.workspace.rules.is_hidden)
    _finish(rt, ctx.tool_call_id, "git_status", {}, started)
    return model_text(out)


@function_tool(failure_error_function=tool_error_text)
def git_diff(ctx: ToolContext[ToolRuntime], path: str | None = None) -> str:
    """Show uncommitted changes of the workspace as a diff.

    Args:
        path: Only this file or directory, relative to the workspace root, optional.
    """
    started = time.perf_counter()
    rt, _ = _start(ctx, "git_diff", {"path": path})
    rel = rt.workspace.relative(rt.workspace.resolve(path)) if path else None
    out = git_tools.git_diff(rt.workspace.root, rel, hidden=rt.workspace.rules.is_hidden)
    _finish(rt, ctx.tool_call_id, "git_diff", {"path": path}, started)
    return model_text(out)


ALL_TOOLS: dict[str, FunctionTool] = {
    t.name: t for t in (read_file, list_dir, search_files, write_file, edit_file, run_command, update_plan,
                        git_status, git_diff)
}


def _strip_titles(schema: Any) -> None:
    """Drop pydantic's generated "title" strings from a JSON schema (property names are kept).

    On a small local model the tool schemas are most of the first prompt, and prefill is the slow part
    (about 13% fewer tokens for nothing the model uses).
    """
    if isinstance(schema, dict):
        if isinstance(schema.get("title"), str):
            del schema["title"]
        for key, value in schema.items():
            if key == "properties" and isinstance(value, dict):
                for prop in value.values():
                    _strip_titles(prop)
            else:
                _strip_titles(value)
    elif isinstance(schema, list):
        for item in schema:
            _strip_titles(item)


for _tool in ALL_TOOLS.values():
    _strip_titles(_tool.params_json_schema)


def executor_tools() -> list[FunctionTool]:
    return list(ALL_TOOLS.values())


def reviewer_tools() -> list[FunctionTool]:
    return [ALL_TOOLS[n] for n in READ_ONLY_TOOLS]


def planner_tools() -> list[FunctionTool]:
    return [ALL_TOOLS[n] for n in ("read_file", "list_dir", "search_files", "update_plan")]


def parse_arguments(raw: str) -> dict[str, Any]:
    """Decode a tool call's JSON arguments for display and decisions; malformed JSON gives {}."""
    try:
        value = json.loads(raw or "{}")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
