"""The engine: runs turns on the SDK, turns its stream into recorded events, and takes ops from clients.

Every event is appended (flushed and fsynced) to the session log before any subscriber sees it. The
engine is the only writer of the log while a session is open; tools hand their side effects
(file changes, plan updates) back to it so that the log order is the order a client renders.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import time
import traceback
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agents import (
    RunConfig,
    Runner,
    RunState,
    SQLiteSession,
)
from agents.exceptions import AgentsException, MaxTurnsExceeded
from agents.items import ToolApprovalItem
from agents.result import RunResultStreaming
from openai.types.responses import (
    ResponseCompletedEvent,
    ResponseFunctionCallArgumentsDeltaEvent,
    ResponseOutputItemAddedEvent,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseReasoningItem,
    ResponseReasoningSummaryTextDeltaEvent,
    ResponseReasoningTextDeltaEvent,
    ResponseTextDeltaEvent,
)

from core.agents import AgentSet, build_agents, parse_review
from core.approvals import AlwaysAllowRule, Decision
from core.audit import AuditLog
from core.checkpoints import CheckpointStore
from core.commands import parse_command
from core.config import APPROVAL_MODES, ApprovalMode, Settings
from core.errors import STATE_DIR_HINT, AgentError, SessionError, WorkspaceError
from core.events import (
    AgentChanged,
    ApprovalDecided,
    ApprovalModeChanged,
    ApprovalRequested,
    AssistantDelta,
    AssistantMessage,
    CheckpointRestored,
    ErrorEvent,
    Event,
    FileChanged,
    Notice,
    Reasoning,
    ReasoningDelta,
    ReviewFinished,
    RunFinished,
    RunStarted,
    SessionResumed,
    SessionStarted,
    ToolCallDelta,
    ToolCallFinished,
    ToolCallRequested,
    ToolCallStarted,
    Usage,
    UserMessage,
)
from core.model import (
    EndpointInfo,
    build_client,
    build_model,
    classify_error,
    discover,
    model_settings,
    prepare_stream_types,
)
from core.policy import BudgetTracker, PolicyStore
from core.session_log import SessionLog
from core.textcalls import split_think, streamable_prefix
from core.traces import install_local_tracing
from tools import files
from tools.registry import LOCAL_TOOLS, ToolRuntime, content_sha256, parse_arguments
from tools.shell import clip_middle
from tools.workspace import Workspace

if TYPE_CHECKING:
    from core.mcp import McpHub

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.1  # ~10 batches a second: fsync never runs per token
FLUSH_CHARS = 4096
PREVIEW_CHARS = 2000
REJECTED_PREFIX = "The operator rejected this call"
REFUSED_PREFIX = "Refused without asking"


def _malformed(arguments: str, parsed: dict[str, Any]) -> bool:
    """Arguments that were sent but did not decode to a JSON object."""
    return arguments.strip() not in ("", "{}") and not parsed


class Engine:
    """One open session: its log, its agent graph, and at most one run at a time."""

    def __init__(self, settings: Settings, session: SessionLog, *, client: str = "cli",
                 endpoint: EndpointInfo | None = None, mcp_hub: McpHub | None = None) -> None:
        self.settings = settings
        self.mcp_hub = mcp_hub
        self.session = session
        self.client = client
        self.endpoint = endpoint
        self.history: list[Event] = []
        self.pending_approvals: list[ApprovalRequested] = []
        self.mode: ApprovalMode = settings.approval
        self._subscribers: list[Callable[[Event], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._preparing: asyncio.Future[None] | None = None
        self._result: RunResultStreaming | None = None
        self._cancel_requested = False
        self._state: RunState[Any] | None = None
        self._paused: dict[str, Any] = {}
        self._decided: dict[str, tuple[str, str]] = {}
        self._awaiting_output: set[str] = set()
        self._notes: list[str] = []
        self._started = False
        # streaming translation state
        self._msg_id: str | None = None
        self._msg_raw = ""
        self._msg_sent_answer = ""
        self._msg_sent_reasoning = ""
        self._reasoning_buf: dict[str, str] = {}
        self._args_buf: dict[str, str] = {}
        self._index_to_call: dict[int, str] = {}
        self._calls_started: set[str] = set()
        self._calls_requested: set[str] = set()
        self._calls_finished: set[str] = set()
        self._call_started_at: dict[str, float] = {}
        self._call_tools: dict[str, str] = {}
        self._last_flush = 0.0
        self._msg_counter = 0
        self._turns = 0
        self._run_id = ""
        self._usage_totals = {"input": 0, "output": 0, "requests": 0}

    # ----------------------------------------------------------------- public API

    @property
    def busy(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def model_id(self) -> str | None:
        return self.endpoint.model if self.endpoint else self.settings.model

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    async def start(self, *, check_endpoint: bool = True) -> None:
        """Load policies and the log, reach the endpoint, and restore a paused run if there is one.

        Raises PolicyError / EndpointError (with hints) so that a client can show them and retry.
        """
        if self._started:
            return
        settings = self.settings
        self.policies = PolicyStore(settings.policy_dir, allowed_commands=settings.allowed_commands,
                                    allow_net=settings.allow_net)
        self.workspace = Workspace(settings.workspace, self.policies.current.paths)
        self.audit = AuditLog(settings.state_dir, secrets=[settings.api_key.get_secret_value()])
        self.checkpoints = CheckpointStore(settings.state_dir, self.workspace.root, session_id=self.session.id)
        self.history = self.session.read_events()
        if self.history:
            self.mode = self.session.meta.approval_mode or self.mode  # type: ignore[assignment]
            for ev in self.history:
                if isinstance(ev, ApprovalModeChanged) and ev.mode in APPROVAL_MODES:
                    self.mode = ev.mode  # type: ignore[assignment]
                elif isinstance(ev, Usage):  # token totals continue across processes
                    self._usage_totals = {"input": ev.input_tokens, "output": ev.output_tokens,
                                          "requests": ev.requests}
        if check_endpoint and self.endpoint is None:
            self.endpoint = await discover(settings)
        install_local_tracing(settings.state_dir)
        self._client = build_client(settings)
        model_id = self.model_id or "local-model"
        self._model = build_model(settings, self._client, model_id)
        if self.mcp_hub is None and settings.mcp_servers:
            from core.mcp import McpHub  # the SDK's MCP server classes load only when servers are configured

            self.mcp_hub = McpHub(settings, self.policies.current)
        mcp_notices: list[str] = []
        if self.mcp_hub is not None:
            # A server that fails to start is reported and left out: the run goes on without its tools.
            mcp_notices = [s.describe() for s in await self.mcp_hub.start() if not s.healthy]
        self.agents: AgentSet = build_agents(self._model, model_settings(settings),
                                             mcp_servers=self.mcp_hub.servers if self.mcp_hub else None)
        try:
            self.memory = SQLiteSession(self.session.id, str(self.session.conversation_db))
        except (sqlite3.Error, OSError) as exc:
            raise SessionError(f"cannot write the state directory {settings.state_dir}: {exc}",
                               hint=STATE_DIR_HINT) from exc
        self.runtime = ToolRuntime(
            settings=settings, workspace=self.workspace, policies=self.policies, checkpoints=self.checkpoints,
            audit=self.audit, budget=BudgetTracker(self.policies.current.budgets), mode=self.mode,
            session_rules=self._rules_from_history())
        self._unsubscribe_policy = self.policies.subscribe(self._on_policy_reload)
        try:  # SIGHUP reloads the policies without a restart (main thread of a Unix process only)
            self.policies.install_sighup_handler(asyncio.get_running_loop())
            self._sighup = True
        except (RuntimeError, ValueError, NotImplementedError):
            self._sighup = False
        self._started = True
        if not self.history:
            self._emit(SessionStarted(session_id=self.session.id, workspace=str(self.workspace.root),
                                      model=self.model_id, base_url=settings.base_url, approval_mode=self.mode,
                                      forked_from=self.session.meta.forked_from))
            self.session.update_meta(model=self.model_id, base_url=settings.base_url, approval_mode=self.mode,
                                     client=self.client)
        else:
            self._emit(SessionResumed(pid=os.getpid(), client=self.client))
            if self.session.meta.forked_from:
                await self._seed_fork_memory()
            await self._restore_paused_run()
            self._close_interrupted_run()
        for warning in self.endpoint.warnings if self.endpoint else []:
            self._emit(Notice(message=warning))
        for notice in mcp_notices:
            self._emit(ErrorEvent(message=f"MCP: {notice}", recoverable=True, kind="mcp",
                                  hint="the run goes on without this server's tools; see `agent mcp health`"))

    async def submit(self, text: str) -> None:
        """Start a run for a new user message (the goal, or a follow-up in the same session)."""
        self._require_started()
        text = text.strip()
        if not text:
            raise SessionError("nothing to send: the message is empty")
        if self.busy:
            raise SessionError("a run is in progress: wait for it, or interrupt it (escape / cancel) first")
        if self.pending_approvals:
            raise SessionError("approvals are pending: approve or reject them first")
        self._run_id = uuid.uuid4().hex[:8]
        self._emit(UserMessage(text=text))
        self._emit(RunStarted(run_id=self._run_id, goal=text, approval_mode=self.mode))
        run_input = self._with_notes(text)
        first_role = "planner" if self.settings.planner else "executor"
        self._task = asyncio.create_task(self._drive(goal=text, role=first_role, run_input=run_input, round=0))

    async def approve(self, call_id: str, *, always: bool = False) -> None:
        request = self._pending(call_id)
        rule_text = None
        if always:
            decision = self._decide_call(request.tool, parse_arguments(request.arguments))
            rules = decision.suggested_rules
            self.runtime.session_rules.extend(rules)
            rule_text = AlwaysAllowRule.join(rules)
        self._decide(request, "always" if always else "approve", "", rule_text)
        if always:  # an always-allow rule may already cover other queued calls
            for other in list(self.pending_approvals):
                if other.call_id not in self._decided and self._decide_call(
                        other.tool, parse_arguments(other.arguments)).verdict == "allow":
                    self._decide(other, "approve", "covered by the always-allow rule just added", None)
        await self._maybe_resume()

    async def reject(self, call_id: str, reason: str = "") -> None:
        request = self._pending(call_id)
        self._decide(request, "reject", reason.strip(), None)
        await self._maybe_resume()

    async def cancel(self) -> None:
        """Interrupt the running turn (the session stays usable), or reject every pending approval."""
        if self.busy and self._result is not None:
            self._cancel_requested = True
            self._result.cancel()
            return
        if self.pending_approvals:
            for request in list(self.pending_approvals):
                if request.call_id not in self._decided:
                    self._decide(request, "reject", "the operator cancelled the run", None)
            await self._maybe_resume()

    async def undo(self) -> None:
        await self._restore("undo")

    async def redo(self) -> None:
        await self._restore("redo")

    def set_approval_mode(self, mode: str) -> None:
        if mode not in APPROVAL_MODES:
            raise SessionError(f"unknown approval mode {mode!r}: use ask, auto-edit or full-auto")
        self.mode = mode  # type: ignore[assignment]
        if self._started:
            self.runtime.mode = self.mode
        self._emit(ApprovalModeChanged(mode=mode))
        self.session.update_meta(approval_mode=mode)

    def notice_external_changes(self, paths: list[str]) -> None:
        """Files changed outside the agent: mark them, and tell the agent before its next turn."""
        if not paths:
            return
        for path in paths:
            self._emit(FileChanged(path=path, change="modified", source="external"))
        self._notes.append("Note: the operator changed these files outside the agent; read them again before "
                           "editing: " + ", ".join(paths[:20]))

    def prepare_run(self) -> None:
        """A message is being typed: build what a first run needs now, in a thread, so its submit need not wait.

        Costs nothing once done; an idle session that never gets a message never pays for it.
        """
        if self._preparing is None:
            self._preparing = asyncio.ensure_future(prepare_stream_types())

    async def wait_idle(self) -> None:
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def close(self) -> None:
        if self._preparing is not None and not self._preparing.done():
            await asyncio.wait([self._preparing])  # a thread cannot be cancelled; a failure shows at submit
        if self.busy:
            await self.cancel()
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=5)  # type: ignore[arg-type]
            except (TimeoutError, asyncio.CancelledError):
                if self._task:
                    self._task.cancel()
        if self.mcp_hub is not None:
            await self.mcp_hub.close()
        if self._started:
            await self._client.close()
            self.memory.close()
            self._unsubscribe_policy()
            if self._sighup:
                self.policies.remove_sighup_handler(asyncio.get_running_loop())
        self.session.close()

    # ----------------------------------------------------------------- recording

    def _emit(self, event: Event) -> Event:
        recorded = self.session.append(event)
        self.history.append(recorded)
        for callback in list(self._subscribers):
            try:
                callback(recorded)
            except Exception:  # a broken client must never break the run or the log
                log.exception("event subscriber failed")
        return recorded

    def _require_started(self) -> None:
        if not self._started:
            raise SessionError("the engine is not started: call start() first")

    def _with_notes(self, text: str) -> str:
        if not self._notes:
            return text
        notes, self._notes = self._notes, []
        return "\n".join(notes) + "\n\n" + text

    def _on_policy_reload(self, error: str | None) -> None:
        if error:
            self._emit(ErrorEvent(message=f"policy reload failed; the previous policy stays in force: {error}",
                                  recoverable=True, hint="fix the file and reload again", kind="policy"))
        else:
            self.workspace.rules = self.policies.current.paths
            self.runtime.budget = BudgetTracker(self.policies.current.budgets)
            self._emit(Notice(message="policies reloaded"))

    def _rules_from_history(self) -> list[AlwaysAllowRule]:
        rules = []
        for ev in self.history:
            if isinstance(ev, ApprovalDecided) and ev.decision == "always" and ev.rule:
                rules.extend(AlwaysAllowRule.split(ev.rule))
        return rules

    # ----------------------------------------------------------------- runs

    def _run_config(self) -> RunConfig:
        return RunConfig(tool_not_found_behavior="return_error_to_model", workflow_name="dev-agent",
                         group_id=self.session.id, trace_include_sensitive_data=False)

    async def _drive(self, *, goal: str, role: str, run_input: Any, round: int) -> None:
        """Planner -> executor -> reviewer, with bounded review rounds. Any phase may pause for approval."""
        try:
            while True:
                outcome, output = await self._run_phase(role, run_input, goal=goal, round=round)
                if outcome != "done":
                    return
                if role == "planner":
                    role, run_input = "executor", "Carry out the plan."
                    continue
                if role == "executor":
                    if self.settings.review_rounds > round and self.runtime.changed_files:
                        role, run_input = "reviewer", await self._review_input(goal, output)
                        continue
                    self._finish("done", output)
                    return
                verdict = parse_review(output)
                self._emit(ReviewFinished(ok=verdict.approved, round=round + 1, findings=verdict.findings))
                if verdict.approved or round + 1 >= self.settings.review_rounds:
                    summary = self._last_executor_text()
                    if not verdict.approved:
                        summary = f"{summary}\n\nThe reviewer still has findings: {verdict.findings}".strip()
                    self._finish("done", summary)
                    return
                round += 1
                self.runtime.changed_files = False
                role, run_input = "executor", (f"The reviewer found problems with your change. Fix them, then "
                                               f"summarize:\n{verdict.findings}")
        except Exception as exc:  # the run must end with a recorded reason, whatever happened
            self.audit.record("run_error", error=repr(exc), traceback=traceback.format_exc(limit=20))
            self._flush_all()
            err = exc if isinstance(exc, AgentError) else classify_error(exc, self.settings)
            self._emit(ErrorEvent(message=err.message, hint=err.hint, recoverable=True,
                                  kind=getattr(err, "kind", "internal")))
            self._finish("failed", err.message)

    def _last_executor_text(self) -> str:
        role = None
        for ev in reversed(self.history):
            if isinstance(ev, AssistantMessage) and ev.role == "executor" and ev.text.strip():
                return ev.text
            if isinstance(ev, AgentChanged):
                role = ev.role
        return role or ""

    async def _review_input(self, goal: str, executor_output: str) -> str:
        parts = [f"Task: {goal}", f"The executor says: {executor_output[:1500]}"]
        from tools.git_tools import git_diff  # local: only review needs it

        diff = await asyncio.to_thread(git_diff, self.workspace.root, None, hidden=self.workspace.rules.is_hidden)
        if "not a git repository" in diff:
            changed = [ev.path for ev in self.history if isinstance(ev, FileChanged) and ev.source == "agent"]
            diff = "Files written: " + ", ".join(dict.fromkeys(changed)) if changed else "No file changes recorded."
        parts.append("Diff:\n" + clip_middle(diff, 6000))
        if self.settings.test_command:
            from tools.shell import format_command_result, run_process

            argv = ["/bin/sh", "-c", self.settings.test_command]
            result = await run_process(argv, cwd=self.workspace.root, limits=self.policies.current.limits,
                                       tools_dir=self.settings.tools_dir)
            self.audit.record("review_tests", command=self.settings.test_command, exit_code=result.exit_code)
            parts.append(f"Test command `{self.settings.test_command}`:\n"
                         + clip_middle(format_command_result(result), 4000))
        return "\n\n".join(parts)

    async def _run_phase(self, role: str, run_input: Any, *, goal: str, round: int) -> tuple[str, str]:
        agent = self.agents.by_role(role)
        self._emit(AgentChanged(role=role, round=round))
        self._cancel_requested = False
        self._reset_stream_state()
        session = None if role == "reviewer" else self.memory
        self.runtime.budget.reset()
        await prepare_stream_types()  # the first run's types, built in a thread instead of on the event loop
        result = Runner.run_streamed(agent, run_input, context=self.runtime, session=session,
                                     max_turns=self.settings.max_turns, run_config=self._run_config())
        self._result = result
        flusher = asyncio.create_task(self._flush_loop())
        try:
            async for event in result.stream_events():
                self._translate(event, role)
        except MaxTurnsExceeded:
            self._flush_all()
            self._emit(ErrorEvent(message=f"stopped after {self.settings.max_turns} model turns (AGENT_MAX_TURNS)",
                                  hint="send 'continue' to go on, or raise AGENT_MAX_TURNS", kind="max_turns"))
            self._finish("max_turns", "turn limit reached")
            return "max_turns", ""
        except (AgentsException, AgentError) as exc:
            self._flush_all()
            message = getattr(exc, "message", None) or str(exc)
            self._emit(ErrorEvent(message=f"the model's reply could not be used: {message}",
                                  hint=getattr(exc, "hint", "") or "retry, or rephrase the request",
                                  kind=type(exc).__name__))
            self._finish("failed", message)
            return "failed", ""
        except Exception as exc:
            self._flush_all()
            self.audit.record("run_error", error=repr(exc), traceback=traceback.format_exc(limit=20))
            err = classify_error(exc, self.settings)
            self._emit(ErrorEvent(message=err.message, hint=err.hint, recoverable=True, kind=err.kind))
            self._finish("failed", err.message)
            return "failed", ""
        finally:
            flusher.cancel()
            self._result = None
        self._flush_all()
        if self._cancel_requested:
            self._finish("cancelled", "interrupted by the operator")
            return "cancelled", ""
        if result.interruptions:
            self._pause(result, role=role, goal=goal, round=round)
            if not self.pending_approvals:
                # Every call was refused outright (malformed, or denied since): go on without asking anyone.
                asyncio.get_running_loop().call_soon(
                    lambda: asyncio.ensure_future(self._maybe_resume(announce=False)))
            return "paused", ""
        if self._awaiting_output:
            self._awaiting_output.clear()
            self.session.clear_run_state()
        output = result.final_output
        return "done", output if isinstance(output, str) else str(output or "")

    def _finish(self, status: str, summary: str) -> None:
        self._emit(RunFinished(run_id=self._run_id, status=status, summary=clip_middle(summary, 4000),  # type: ignore[arg-type]
                               turns=self._turns))
        if status != "paused":
            self.session.clear_run_state()
            self._state = None
            self._paused = {}

    # ----------------------------------------------------------------- stream translation

    def _reset_stream_state(self) -> None:
        self._msg_id = None
        self._msg_raw = self._msg_sent_answer = self._msg_sent_reasoning = ""
        self._reasoning_buf.clear()
        self._args_buf.clear()
        self._index_to_call.clear()
        self._last_flush = time.monotonic()

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            self._flush_all()

    def _new_message_id(self) -> str:
        self._msg_counter += 1
        return f"{self._run_id or 'm'}-{self._msg_counter}"

    def _translate(self, event: Any, role: str) -> None:
        if event.type == "raw_response_event":
            self._translate_raw(event.data, role)
        elif event.type == "run_item_stream_event":
            if event.name == "tool_called":
                raw = event.item.raw_item
                call_id = getattr(raw, "call_id", "") or ""
                name = getattr(raw, "name", "") or ""
                arguments = getattr(raw, "arguments", "") or ""
                self._tool_requested(call_id, name, arguments)
            elif event.name == "tool_output":
                self._tool_output(event.item)
        if time.monotonic() - self._last_flush >= FLUSH_INTERVAL_S:
            self._flush_all()

    def _translate_raw(self, data: Any, role: str) -> None:
        if isinstance(data, ResponseTextDeltaEvent):
            if self._msg_id is None:
                self._msg_id = self._new_message_id()
            self._msg_raw += data.delta
            if len(self._msg_raw) - len(self._msg_sent_answer) >= FLUSH_CHARS:
                self._flush_text()
        elif isinstance(data, (ResponseReasoningSummaryTextDeltaEvent, ResponseReasoningTextDeltaEvent)):
            key = self._msg_id or "reasoning"
            self._reasoning_buf[key] = self._reasoning_buf.get(key, "") + data.delta
        elif isinstance(data, ResponseOutputItemAddedEvent):
            item = data.item
            if getattr(item, "type", "") == "function_call":
                call_id = getattr(item, "call_id", "") or f"idx{data.output_index}"
                self._index_to_call[data.output_index] = call_id
                self._flush_all()
                self._tool_started(call_id, getattr(item, "name", "") or "")
        elif isinstance(data, ResponseFunctionCallArgumentsDeltaEvent):
            call_id = self._index_to_call.get(data.output_index)
            if call_id:
                self._args_buf[call_id] = self._args_buf.get(call_id, "") + data.delta
        elif isinstance(data, ResponseCompletedEvent):
            self._turns += 1
            self._complete_response(data.response, role)

    def _complete_response(self, response: Any, role: str) -> None:
        """The model turn is over: publish the final text (tool calls printed as text already removed)."""
        self._flush_all()
        final_text = ""
        reasoning = []
        for item in response.output:
            if isinstance(item, ResponseOutputMessage):
                final_text += "".join(p.text for p in item.content if isinstance(p, ResponseOutputText))
            elif isinstance(item, ResponseReasoningItem):
                reasoning.extend(s.text for s in item.summary)
                reasoning.extend(getattr(c, "text", "") for c in (item.content or []))
        answer, think = split_think(final_text)
        if think:
            reasoning.append(think)
        reasoning_text = "\n".join(r for r in reasoning if r).strip()
        msg_id = self._msg_id or (self._new_message_id() if (answer or reasoning_text) else None)
        if msg_id and reasoning_text:
            self._emit(Reasoning(message_id=msg_id, text=reasoning_text))
        if msg_id and (answer or self._msg_sent_answer):
            self._emit(AssistantMessage(message_id=msg_id, text=answer, role=role))
        usage = response.usage
        if usage is not None:
            totals = self._usage_totals
            totals["input"] += usage.input_tokens or 0
            totals["output"] += usage.output_tokens or 0
            totals["requests"] += 1
            context_used = (usage.input_tokens or 0) + (usage.output_tokens or 0)
            self._emit(Usage(input_tokens=totals["input"], output_tokens=totals["output"],
                             total_tokens=totals["input"] + totals["output"], requests=totals["requests"],
                             context_used=context_used,
                             context_limit=self.endpoint.context_window if self.endpoint else None))
            refusal = self.runtime.budget.add_tokens((usage.input_tokens or 0) + (usage.output_tokens or 0))
            if refusal and self._result is not None:
                self._emit(ErrorEvent(message=refusal, hint="raise budgets.max_tokens in tools.yaml",
                                      kind="budget"))
                self._cancel_requested = True
                self._result.cancel()
        self._msg_id = None
        self._msg_raw = self._msg_sent_answer = self._msg_sent_reasoning = ""

    def _flush_text(self) -> None:
        if self._msg_id is None or not self._msg_raw:
            return
        answer, think = split_think(self._msg_raw)
        if think and think != self._msg_sent_reasoning and think.startswith(self._msg_sent_reasoning):
            self._emit(ReasoningDelta(message_id=self._msg_id, text=think[len(self._msg_sent_reasoning):]))
            self._msg_sent_reasoning = think
        if "<think>" in self._msg_raw and "</think>" not in self._msg_raw:
            return  # inside an open think block: nothing of the answer yet
        shown = streamable_prefix(answer)
        if shown.startswith(self._msg_sent_answer) and len(shown) > len(self._msg_sent_answer):
            self._emit(AssistantDelta(message_id=self._msg_id, text=shown[len(self._msg_sent_answer):]))
            self._msg_sent_answer = shown

    def _flush_all(self) -> None:
        self._last_flush = time.monotonic()
        self._flush_text()
        for key, text in list(self._reasoning_buf.items()):
            if text:
                self._emit(ReasoningDelta(message_id=key, text=text))
        self._reasoning_buf.clear()
        for call_id, text in list(self._args_buf.items()):
            if text:
                self._emit(ToolCallDelta(call_id=call_id, text=text))
        self._args_buf.clear()

    def _tool_started(self, call_id: str, name: str) -> None:
        if call_id in self._calls_started:
            return
        self._calls_started.add(call_id)
        self._call_started_at[call_id] = time.monotonic()
        self._call_tools[call_id] = name
        self._emit(ToolCallStarted(call_id=call_id, tool=name))

    def _tool_requested(self, call_id: str, name: str, arguments: str) -> None:
        self._flush_all()
        self._tool_started(call_id, name)
        if call_id in self._calls_requested:
            return
        self._calls_requested.add(call_id)
        args = parse_arguments(arguments)
        decision = self._decide_call(name, args)
        verdict, reason = decision.verdict, decision.reason
        if _malformed(arguments, args):
            verdict, reason = "deny", "the arguments are not valid JSON"
        self._emit(ToolCallRequested(call_id=call_id, tool=name, arguments=arguments, decision=verdict,
                                     reason=reason))

    def _decide_call(self, name: str, args: dict[str, Any]) -> Decision:
        """Local tools go through the policy; MCP tools through their server's approval settings."""
        if name not in LOCAL_TOOLS and self.mcp_hub is not None:
            return self.mcp_hub.decide(name, self.runtime)
        return self.runtime.decide(name, args)

    def _tool_output(self, item: Any) -> None:
        raw = item.raw_item
        call_id = (raw.get("call_id") if isinstance(raw, dict) else getattr(raw, "call_id", "")) or ""
        if call_id in self._calls_finished:
            return
        self._flush_all()
        for side in self.runtime.side_events.pop(call_id, []):
            self._emit(side)
        output = item.output if isinstance(item.output, str) else json.dumps(item.output, default=str)
        status = self.runtime.call_status.pop(call_id, None)
        if status is None:
            if output.startswith(REJECTED_PREFIX):
                status = "rejected"
            elif output.startswith(REFUSED_PREFIX):
                status = "refused"
            elif output.startswith("ERROR") or output.startswith("An error occurred") or "not found" in output[:80]:
                status = "failed"
            else:
                status = "ok"
        started = self._call_started_at.pop(call_id, None)
        duration = (time.monotonic() - started) * 1000 if started else 0.0
        self._calls_finished.add(call_id)
        tool = self._call_tools.get(call_id) or next(
            (getattr(e, "tool", "") for e in reversed(self.history)
             if isinstance(e, (ToolCallRequested, ToolCallStarted, ApprovalRequested)) and e.call_id == call_id), "")
        self._emit(ToolCallFinished(call_id=call_id, tool=tool, ok=status == "ok",
                                    status=status, duration_ms=round(duration, 1),  # type: ignore[arg-type]
                                    output_preview=clip_middle(output, PREVIEW_CHARS), output_chars=len(output),
                                    diff=self.runtime.diffs.pop(call_id, None)))
        if call_id in self._awaiting_output:
            self._awaiting_output.discard(call_id)
            if not self._awaiting_output:
                # The decision has been consumed: from here on a crash is an ordinary interrupted run.
                self.session.clear_run_state()

    # ----------------------------------------------------------------- approvals

    def _pause(self, result: RunResultStreaming, *, role: str, goal: str, round: int) -> None:
        state = result.to_state()
        self._state = state
        self._paused = {"role": role, "goal": goal, "round": round, "run_id": self._run_id}
        blob = json.dumps({**self._paused, "state": state.to_string(context_serializer=lambda _ctx: {})})
        self.session.save_run_state(blob)  # on disk before anyone is asked
        self._decided.clear()
        for item in result.interruptions:
            self._request_approval(item)
        if self.pending_approvals:
            self._finish("paused", f"waiting for {len(self.pending_approvals)} approval(s)")

    def _request_approval(self, item: ToolApprovalItem, *, note: str = "") -> None:
        call_id = getattr(item.raw_item, "call_id", None) or ""
        if any(r.call_id == call_id for r in self.pending_approvals):
            return
        name = item.name or getattr(item.raw_item, "name", "")
        arguments = item.arguments or "{}"
        args = parse_arguments(arguments)
        decision = self._decide_call(name, args)
        diff = argv = cwd = base = None
        kind = "other"
        summary = name
        if name in ("write_file", "edit_file"):
            kind = "write"
            try:
                change = (files.plan_write(self.workspace, str(args.get("path", "")), str(args.get("content", "")))
                          if name == "write_file" else
                          files.plan_edit(self.workspace, str(args.get("path", "")), str(args.get("old_text", "")),
                                          str(args.get("new_text", "")), bool(args.get("replace_all", False))))
                diff = change.diff
                base = content_sha256(change.old)
                self.runtime.approved_bases[call_id] = base
                summary = f"{'create' if change.created else 'change'} {change.path}"
            except WorkspaceError as exc:
                summary = f"{name} {args.get('path', '')}: {exc.message}"
        elif name == "run_command":
            kind = "command"
            command = str(args.get("command", ""))
            summary = command
            cwd = str(self.workspace.root)
            try:
                argv = [list(p.argv) for p in parse_command(command).parts]
            except WorkspaceError:
                argv = None
        elif name not in LOCAL_TOOLS:
            kind = "mcp"
        suggested = "; ".join(r.describe() for r in decision.suggested_rules) or None
        reason = decision.reason if not note else f"{note} {decision.reason}".strip()
        request = ApprovalRequested(call_id=call_id, tool=name, arguments=arguments, kind=kind, summary=summary,
                                    diff=diff, argv=argv, cwd=cwd, reason=reason, suggested_rule=suggested,
                                    base_sha256=base)
        # The SDK asks whenever arguments do not parse, and a policy may have changed since the call was made:
        # nobody is asked about a call that can only be refused; the model is told why instead.
        refusal = None
        if _malformed(arguments, args):
            refusal = "the arguments are not valid JSON; send the call again with a JSON object of its arguments"
        elif decision.verdict == "deny":
            refusal = decision.reason
        if refusal is not None:
            self._decided[call_id] = ("refuse", refusal)
            self.audit.record("approval", call_id=call_id, tool=name, decision="reject", reason=refusal, auto=True)
            return
        recorded = self._emit(request)
        self.pending_approvals.append(recorded)  # type: ignore[arg-type]

    def _pending(self, call_id: str) -> ApprovalRequested:
        self._require_started()
        for request in self.pending_approvals:
            if request.call_id == call_id or (call_id and request.call_id.startswith(call_id)):
                return request
        raise SessionError(f"no pending approval with id {call_id!r}")

    def _decide(self, request: ApprovalRequested, decision: str, reason: str, rule: str | None) -> None:
        self._emit(ApprovalDecided(call_id=request.call_id, decision=decision, reason=reason,  # type: ignore[arg-type]
                                   rule=rule))
        self.audit.record("approval", call_id=request.call_id, tool=request.tool, decision=decision, reason=reason,
                          rule=rule)
        self._decided[request.call_id] = ("reject" if decision == "reject" else "approve", reason)

    async def _maybe_resume(self, *, announce: bool = True) -> None:
        if any(r.call_id not in self._decided for r in self.pending_approvals):
            return
        state = self._state
        if state is None:
            raise SessionError("no paused run to resume")
        for item in state.get_interruptions():
            call_id = getattr(item.raw_item, "call_id", "")
            verdict, reason = self._decided.get(call_id, ("reject", "no decision recorded"))
            if verdict == "approve":
                state.approve(item)
            elif verdict == "refuse":
                state.reject(item, rejection_message=f"{REFUSED_PREFIX}: {reason}")
            else:
                message = f"{REJECTED_PREFIX}: {reason}" if reason else f"{REJECTED_PREFIX}."
                state.reject(item, rejection_message=message)
        self._awaiting_output = {r.call_id for r in self.pending_approvals}
        now = time.monotonic()  # a decided call's duration runs from the decision, not from the request
        for request in self.pending_approvals:
            self._call_started_at[request.call_id] = now
            self._call_tools[request.call_id] = request.tool
        self.pending_approvals = []
        paused, self._paused = self._paused, {}
        self._state = None
        self._run_id = paused.get("run_id", self._run_id)
        if announce:
            self._emit(RunStarted(run_id=self._run_id, goal=paused.get("goal", ""), approval_mode=self.mode))
        self._task = asyncio.create_task(self._drive(goal=paused.get("goal", ""), role=paused.get("role", "executor"),
                                                     run_input=state, round=int(paused.get("round", 0))))

    async def _restore_paused_run(self) -> None:
        blob = self.session.load_run_state()
        if not blob:
            return
        try:
            saved = json.loads(blob)
            agent = self.agents.by_role(saved.get("role", "executor"))
            state = await RunState.from_string(agent, saved["state"], context_deserializer=lambda _d: self.runtime)
        except Exception as exc:  # a corrupt state file is reported, never fatal
            log.exception("cannot restore paused run")
            self._emit(ErrorEvent(message=f"the paused run could not be restored: {exc}", recoverable=True,
                                  hint="the session's history is intact; send a new message to go on",
                                  kind="run_state"))
            self.session.clear_run_state()
            self._emit(RunFinished(run_id=self._run_id, status="interrupted", summary="paused run lost"))
            return
        self._state = state
        self._paused = {k: saved.get(k) for k in ("role", "goal", "round", "run_id")}
        self._run_id = saved.get("run_id") or self._run_id
        requested = {ev.call_id: ev for ev in self.history if isinstance(ev, ApprovalRequested)}
        decided = {ev.call_id: ev for ev in self.history if isinstance(ev, ApprovalDecided)}
        for call_id, ev in requested.items():
            if ev.base_sha256:
                self.runtime.approved_bases[call_id] = ev.base_sha256
        for item in state.get_interruptions():
            call_id = getattr(item.raw_item, "call_id", "")
            name = item.name or ""
            if call_id in decided and name != "run_command":
                d = decided[call_id]
                self.pending_approvals.append(requested.get(call_id) or ApprovalRequested(
                    call_id=call_id, tool=name, arguments=item.arguments or "{}"))
                self._decided[call_id] = ("reject" if d.decision == "reject" else "approve", d.reason)
            elif call_id in requested and call_id not in decided:
                self.pending_approvals.append(requested[call_id])
            else:
                # Never asked (crash before the request was recorded), or a command whose approved run was
                # interrupted: ask (again) rather than run a command twice without the operator knowing.
                note = "" if call_id not in decided else (
                    "(asked again: the previous process stopped after your decision, before the command finished)")
                self._request_approval(item, note=note)
        if self.pending_approvals and all(r.call_id in self._decided for r in self.pending_approvals):
            await self._maybe_resume()

    def _close_interrupted_run(self) -> None:
        """A run that was running when the process died gets an honest ending in the log."""
        if self._state is not None or self.busy:
            return
        last_start = last_finish = -1
        for i, ev in enumerate(self.history):
            if isinstance(ev, RunStarted):
                last_start = i
            elif isinstance(ev, RunFinished):
                last_finish = i
        if last_start > last_finish:
            run = self.history[last_start]
            self._emit(RunFinished(run_id=getattr(run, "run_id", ""), status="interrupted",
                                   summary="the process stopped during this run; send a message to continue"))

    async def _seed_fork_memory(self) -> None:
        """A fork has no conversation memory of its own: rebuild it from the copied events."""
        if await self.memory.get_items(limit=1):
            return
        items: list[Any] = []
        for ev in self.history:
            if isinstance(ev, UserMessage):
                items.append({"role": "user", "content": ev.text})
            elif isinstance(ev, AssistantMessage) and ev.text:
                items.append({"role": "assistant", "content": ev.text})
            elif isinstance(ev, ToolCallFinished):
                items.append({"role": "assistant",
                              "content": f"[{ev.tool} -> {ev.status}] {ev.output_preview[:500]}"})
        if items:
            await self.memory.add_items(items)

    # ----------------------------------------------------------------- undo / redo

    async def _restore(self, action: str) -> None:
        self._require_started()
        if self.busy:
            raise SessionError(f"cannot {action} while a run is in progress: interrupt it first")
        try:
            result = await asyncio.to_thread(self.checkpoints.undo if action == "undo" else self.checkpoints.redo)
        except AgentError as exc:
            self._emit(Notice(message=f"{action}: {exc.message}"))
            return
        self._emit(CheckpointRestored(action=action, checkpoint=result.checkpoint,  # type: ignore[arg-type]
                                      files=list(result.files)))
        for path in result.files:
            self._emit(FileChanged(path=path, source=action, checkpoint=result.checkpoint))  # type: ignore[arg-type]
        verb = "undid" if action == "undo" else "redid"
        listing = ", ".join(result.files[:20]) or "no files"
        self._notes.append(f"Note: the operator {verb} your last change; these files were restored: {listing}. "
                           "Read them again before editing.")
        self.audit.record(action, checkpoint=result.checkpoint, files=list(result.files))

