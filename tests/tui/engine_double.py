"""A test double of the Engine protocol (DESIGN.md) for UI behaviour tests, and a realistic event sequence."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from core.events import (
    AssistantDelta,
    AssistantMessage,
    Event,
    PlanStep,
    PlanUpdated,
    RunFinished,
    RunStarted,
    SessionStarted,
    ToolCallFinished,
    ToolCallRequested,
    ToolCallStarted,
    Usage,
    UserMessage,
)
from tui.app import DevAgentApp

FIXED_CLOCK = 1000.0
SESSION_ID = "5e55f00d-0000-4000-8000-000000000001"

DIFF = "\n".join([
    "--- a/src/calc.py",
    "+++ b/src/calc.py",
    "@@ -1,4 +1,4 @@",
    " def add(a, b):",
    "-    return a - b",
    "+    return a + b",
    " ",
    " def sub(a, b):",
    "",
])

ANSWER = "I fixed `add` in **src/calc.py**:\n\n- it subtracted instead of adding\n- the tests pass now\n"


class RecordingEngine:
    """Records every op; `emit` plays the engine's side (record, then tell subscribers)."""

    def __init__(self, history: Iterable[Event] = ()) -> None:
        self.history: list[Event] = list(history)
        self.ops: list[tuple[object, ...]] = []
        self.busy = False
        self.pending_approvals: list[Event] = []
        self._subscribers: list[Callable[[Event], None]] = []

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def emit(self, *events: Event) -> None:
        for event in events:
            self.history.append(event)
            for callback in list(self._subscribers):
                callback(event)

    async def start(self) -> None:
        self.ops.append(("start",))

    async def submit(self, text: str) -> None:
        self.ops.append(("submit", text))

    def prepare_run(self) -> None:
        self.ops.append(("prepare_run",))

    async def approve(self, call_id: str, *, always: bool = False) -> None:
        self.ops.append(("approve", call_id, always))

    async def reject(self, call_id: str, reason: str = "") -> None:
        self.ops.append(("reject", call_id, reason))

    async def cancel(self) -> None:
        self.ops.append(("cancel",))

    async def undo(self) -> None:
        self.ops.append(("undo",))

    async def redo(self) -> None:
        self.ops.append(("redo",))

    def set_approval_mode(self, mode: str) -> None:
        self.ops.append(("set_approval_mode", mode))

    async def close(self) -> None:
        self.ops.append(("close",))


def session_start(seq: int = 1) -> list[Event]:
    return [SessionStarted(seq=seq, ts=0.0, session_id=SESSION_ID, workspace="/work/ws", model="qwen2.5-coder-7b",
                           approval_mode="ask")]


def run_until_answer(goal: str = "fix the add function", *, start: int = 2, deltas: int = 6) -> list[Event]:
    """user_message .. tool call with a diff .. streamed answer (not yet final)."""
    events: list[Event] = [
        UserMessage(text=goal),
        RunStarted(run_id="run-1", goal=goal),
        PlanUpdated(steps=[PlanStep(title="Read src/calc.py", status="done"),
                           PlanStep(title="Fix add()", status="in_progress"),
                           PlanStep(title="Run the tests", status="pending")]),
        ToolCallStarted(call_id="call-1", tool="edit_file"),
        ToolCallRequested(call_id="call-1", tool="edit_file",
                          arguments='{"path": "src/calc.py", "old_text": "a - b", "new_text": "a + b"}'),
        ToolCallFinished(call_id="call-1", tool="edit_file", ok=True, duration_ms=42.0,
                         output_preview="edited src/calc.py (1 replacement)", output_chars=34, diff=DIFF),
        ToolCallStarted(call_id="call-2", tool="run_command", arguments='{"command": "pytest -q"}'),
        ToolCallRequested(call_id="call-2", tool="run_command", arguments='{"command": "pytest -q"}'),
        ToolCallFinished(call_id="call-2", tool="run_command", ok=True, duration_ms=1830.0,
                         output_preview="exit code 0\n3 passed in 0.02s", output_chars=30),
    ]
    size = len(ANSWER) // deltas + 1
    events += [AssistantDelta(message_id="msg-1", text=ANSWER[i:i + size]) for i in range(0, len(ANSWER), size)]
    for offset, event in enumerate(events):
        event.seq, event.ts = start + offset, float(start + offset)
    return events


def run_end(start: int) -> list[Event]:
    events: list[Event] = [
        AssistantMessage(message_id="msg-1", text=ANSWER),
        Usage(input_tokens=5200, output_tokens=300, total_tokens=5500, requests=3, context_used=4100,
              context_limit=32768),
        RunFinished(run_id="run-1", status="done", turns=3),
    ]
    for offset, event in enumerate(events):
        event.seq, event.ts = start + offset, float(start + offset)
    return events


def whole_run() -> list[Event]:
    first = session_start() + run_until_answer()
    return first + run_end(len(first) + 1)


def make_app(engine: RecordingEngine | None = None, **kwargs: object) -> tuple[DevAgentApp, RecordingEngine]:
    """The app over a RecordingEngine with a frozen clock; `factory_calls` counts engine starts."""
    engine = engine or RecordingEngine()

    async def factory() -> RecordingEngine:
        await engine.start()
        return engine

    options: dict[str, object] = {"workspace_label": "/work/ws", "model_label": "qwen2.5-coder-7b",
                                  "clock": lambda: FIXED_CLOCK}
    options.update(kwargs)
    app = DevAgentApp(engine_factory=factory, **options)  # type: ignore[arg-type]
    return app, engine
