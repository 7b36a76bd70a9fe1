"""The one event vocabulary: the live feed, the session log and replay on resume all use it.

Every event is a flat JSON object ``{"seq", "ts", "type", ...fields}``. Unknown types read back as a
plain :class:`Event` so that an older client can still list a newer session.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

EVENT_TYPES: dict[str, type[Event]] = {}


class Event(BaseModel):
    """Base event. ``seq`` and ``ts`` are assigned by the session log when the event is recorded."""

    model_config = ConfigDict(extra="allow")
    type: str
    seq: int = 0
    ts: float = 0.0

    TYPE: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.TYPE:
            EVENT_TYPES[cls.TYPE] = cls

    @model_validator(mode="before")
    @classmethod
    def _default_type(cls, data: Any) -> Any:
        # A validator, not __init__: pydantic runs a model's own __init__ inside every validation, so each
        # event read from a log was validated twice.
        if isinstance(data, dict) and "type" not in data and cls.TYPE:
            return {**data, "type": cls.TYPE}
        return data

    def to_json(self) -> str:
        data = self.model_dump(mode="json", exclude_none=False)
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            # Lone surrogates (a non-UTF-8 file name) cannot be written as UTF-8: JSON escapes keep them exact.
            text = json.dumps(data, separators=(",", ":"))
        return text


def parse_event(data: dict[str, Any]) -> Event:
    """Build the typed event for a decoded log line (unknown types stay a plain Event)."""
    cls = EVENT_TYPES.get(str(data.get("type", "")), Event)
    return cls.model_validate(data)


def event_from_json(line: str) -> Event:
    return parse_event(json.loads(line))


class SessionStarted(Event):
    TYPE: ClassVar[str] = "session_started"
    session_id: str
    workspace: str
    model: str | None = None
    base_url: str = ""
    approval_mode: str = "ask"
    forked_from: str | None = None


class SessionResumed(Event):
    """A client reopened the session (replay happened before this event)."""

    TYPE: ClassVar[str] = "session_resumed"
    pid: int = 0
    client: str = ""


class UserMessage(Event):
    TYPE: ClassVar[str] = "user_message"
    text: str


class RunStarted(Event):
    TYPE: ClassVar[str] = "run_started"
    run_id: str
    goal: str
    approval_mode: str = "ask"


class AgentChanged(Event):
    """The active role changed: planner, executor or reviewer."""

    TYPE: ClassVar[str] = "agent_changed"
    role: str
    round: int = 0


class AssistantDelta(Event):
    """A batch of streamed text (the engine coalesces raw deltas, ~10 batches a second)."""

    TYPE: ClassVar[str] = "assistant_delta"
    message_id: str
    text: str


class AssistantMessage(Event):
    TYPE: ClassVar[str] = "assistant_message"
    message_id: str
    text: str
    role: str = "executor"


class ReasoningDelta(Event):
    TYPE: ClassVar[str] = "reasoning_delta"
    message_id: str
    text: str


class Reasoning(Event):
    TYPE: ClassVar[str] = "reasoning"
    message_id: str
    text: str


class PlanStep(BaseModel):
    title: str
    status: Literal["pending", "in_progress", "done"] = "pending"


class PlanUpdated(Event):
    TYPE: ClassVar[str] = "plan_updated"
    steps: list[PlanStep]
    note: str | None = None


class ToolCallStarted(Event):
    """A tool call began streaming from the model (arguments may still be arriving)."""

    TYPE: ClassVar[str] = "tool_call_started"
    call_id: str
    tool: str
    arguments: str = ""


class ToolCallDelta(Event):
    """A batch of streamed tool-call argument text (a long write_file shows progress)."""

    TYPE: ClassVar[str] = "tool_call_delta"
    call_id: str
    text: str


class ToolCallRequested(Event):
    """The model finished the call; the policy decision for it is attached."""

    TYPE: ClassVar[str] = "tool_call_requested"
    call_id: str
    tool: str
    arguments: str
    decision: Literal["allow", "ask", "deny"] = "allow"
    reason: str = ""


class ToolCallFinished(Event):
    TYPE: ClassVar[str] = "tool_call_finished"
    call_id: str
    tool: str
    ok: bool
    status: Literal["ok", "failed", "refused", "rejected"] = "ok"
    duration_ms: float = 0.0
    output_preview: str = ""
    output_chars: int = 0
    diff: str | None = None


class ApprovalRequested(Event):
    TYPE: ClassVar[str] = "approval_requested"
    call_id: str
    tool: str
    arguments: str
    kind: Literal["write", "command", "mcp", "other"] = "other"
    summary: str = ""
    diff: str | None = None
    argv: list[list[str]] | None = None
    cwd: str | None = None
    reason: str = ""
    suggested_rule: str | None = None
    # For writes: sha256 of the file as shown in the diff ("absent" for a new file). The write is refused if the
    # file differs when the approved call runs, so an edit made meanwhile is never silently overwritten.
    base_sha256: str | None = None


class ApprovalDecided(Event):
    TYPE: ClassVar[str] = "approval_decided"
    call_id: str
    decision: Literal["approve", "always", "reject"]
    reason: str = ""
    rule: str | None = None


class FileChanged(Event):
    TYPE: ClassVar[str] = "file_changed"
    path: str
    change: Literal["added", "modified", "deleted"] = "modified"
    source: Literal["agent", "external", "undo", "redo"] = "agent"
    checkpoint: str | None = None


class CheckpointRestored(Event):
    TYPE: ClassVar[str] = "checkpoint_restored"
    action: Literal["undo", "redo", "restore_file"]
    checkpoint: str
    files: list[str] = Field(default_factory=list)


class Usage(Event):
    TYPE: ClassVar[str] = "usage"
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    requests: int = 0
    context_used: int = 0
    context_limit: int | None = None


class ReviewFinished(Event):
    TYPE: ClassVar[str] = "review_finished"
    ok: bool
    round: int
    findings: str = ""


class RunFinished(Event):
    TYPE: ClassVar[str] = "run_finished"
    run_id: str = ""
    status: Literal["done", "failed", "cancelled", "paused", "max_turns", "interrupted"]
    summary: str = ""
    turns: int = 0


class Notice(Event):
    """Something the operator should know that is not an error (policy reloaded, external edits...)."""

    TYPE: ClassVar[str] = "notice"
    message: str


class ApprovalModeChanged(Event):
    TYPE: ClassVar[str] = "approval_mode_changed"
    mode: str


class ErrorEvent(Event):
    TYPE: ClassVar[str] = "error"
    message: str
    recoverable: bool = True
    hint: str = ""
    kind: str = ""


# Session status derived from the log (also kept in meta.json).
SessionStatus = Literal["new", "running", "paused", "done", "failed", "interrupted", "cancelled", "broken"]
