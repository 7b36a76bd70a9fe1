"""Engine per-event overhead (`Engine._emit`: record + fsync + publish) and a guarded write's overhead."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from agents.tool_context import ToolContext

from core import session_log
from core.audit import AuditLog
from core.checkpoints import CheckpointStore
from core.config import Settings, load_settings
from core.engine import Engine
from core.events import AssistantDelta, Event, Notice
from core.policy import BudgetTracker, PolicyStore
from core.session_log import SessionStore
from tests.benchmarks.common import Figure, agent_env, load_average, percentile
from tools import files
from tools.registry import ToolRuntime, write_file
from tools.workspace import Workspace

EVENTS = 10_000
WORKSPACE_FILES = 200
WRITES = 30
# A ~10-a-second delta batch of a fast model is a few hundred characters.
DELTA_TEXT = "streamed answer text " * 20


def _settings(tmp: Path, name: str) -> Settings:
    workspace = tmp / f"ws-{name}"
    state = tmp / f"state-{name}"
    workspace.mkdir(parents=True, exist_ok=True)
    state.mkdir(parents=True, exist_ok=True)
    return load_settings(agent_env("http://127.0.0.1:9/v1", workspace, state))


def _fsynced_event() -> Event:
    return Notice(message=DELTA_TEXT)


def _fragment() -> Event:
    return AssistantDelta(message_id="msg-1", text=DELTA_TEXT)


def _emit_run(tmp: Path, index: int, make: Callable[[], Event] = _fsynced_event) -> tuple[list[float], float]:
    """Per-event wall times, and the CPU seconds per event (what is left when the disk wait is taken out)."""
    settings = _settings(tmp, f"emit-{index}")
    session = SessionStore(settings.state_dir).create(workspace=settings.workspace, model="m", client="bench")
    session.acquire()
    engine = Engine(settings, session, client="bench")
    received: list[int] = []
    engine.subscribe(lambda event: received.append(event.seq))
    times: list[float] = []
    cpu_before = time.process_time()
    try:
        for _ in range(EVENTS):
            event = make()
            started = time.perf_counter()
            engine._emit(event)
            times.append(time.perf_counter() - started)
    finally:
        cpu = (time.process_time() - cpu_before) / EVENTS
        session.close()
    if received != list(range(1, EVENTS + 1)):
        raise RuntimeError("the subscriber did not see every event exactly once, in order")
    return times, cpu


def _fsync_floor(tmp: Path) -> list[float]:
    """The disk's own cost: append the same bytes and fsync, with nothing else around it."""
    data = (AssistantDelta(seq=1, ts=1.0, message_id="msg-1", text=DELTA_TEXT).to_json() + "\n").encode()
    path = tmp / f"floor-{time.monotonic_ns()}.jsonl"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    times: list[float] = []
    try:
        for _ in range(EVENTS // 5):
            started = time.perf_counter()
            os.write(fd, data)
            os.fsync(fd)
            times.append(time.perf_counter() - started)
    finally:
        os.close(fd)
        path.unlink()
    return times


def _workspace_tree(root: Path) -> None:
    for index in range(WORKSPACE_FILES):
        path = root / f"src/pkg_{index % 10}/module_{index}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"def f_{index}_{n}(x):\n    return x + {n}\n\n" for n in range(40)))


def _runtime(settings: Settings) -> ToolRuntime:
    """What Engine.start builds for tool calls, in auto-edit mode so writes run without asking."""
    policies = PolicyStore(settings.policy_dir, allowed_commands=settings.allowed_commands,
                           allow_net=settings.allow_net)
    workspace = Workspace(settings.workspace, policies.current.paths)
    return ToolRuntime(settings=settings, workspace=workspace, policies=policies,
                       checkpoints=CheckpointStore(settings.state_dir, workspace.root, session_id="bench"),
                       audit=AuditLog(settings.state_dir, secrets=["bench-key"]),
                       budget=BudgetTracker(policies.current.budgets), mode="auto-edit")


def _guarded_run(tmp: Path, index: int) -> dict[str, list[float]]:
    settings = _settings(tmp, f"tool-{index}")
    _workspace_tree(settings.workspace)
    rt = _runtime(settings)

    async def guarded(call: int) -> float:
        args = {"path": f"src/pkg_{call % 10}/module_{call}.py", "content": f"VALUE = {call}\n" * 50}
        raw = json.dumps(args)
        ctx = ToolContext(context=rt, tool_name="write_file", tool_call_id=f"call-{index}-{call}", tool_arguments=raw)
        rt.budget.reset()
        started = time.perf_counter()
        output = await write_file.on_invoke_tool(ctx, raw)
        elapsed = time.perf_counter() - started
        if output.startswith("ERROR"):
            raise RuntimeError(f"the guarded write failed: {output}")
        return elapsed

    def plain(call: int) -> float:
        started = time.perf_counter()
        change = files.plan_write(rt.workspace, f"src/pkg_{call % 10}/module_{call}.py", f"PLAIN = {call}\n" * 50)
        files.apply_change(rt.workspace, change)
        return time.perf_counter() - started

    first = asyncio.run(guarded(0))
    result: dict[str, list[float]] = {"first": [first], "guarded": [], "plain": [], "decide": [], "snapshot": [],
                                      "record_after": [], "audit": []}
    for call in range(1, WRITES + 1):
        result["guarded"].append(asyncio.run(guarded(call)))
        result["plain"].append(plain(call + WRITES))
        path = f"src/pkg_{call % 10}/module_{call + 2 * WRITES}.py"
        started = time.perf_counter()
        rt.decide("write_file", {"path": path, "content": "x"})
        result["decide"].append(time.perf_counter() - started)
        started = time.perf_counter()
        rt.checkpoints.snapshot(f"write_file {path}", paths=[path])
        result["snapshot"].append(time.perf_counter() - started)
        started = time.perf_counter()
        rt.checkpoints.record_after()
        result["record_after"].append(time.perf_counter() - started)
        started = time.perf_counter()
        rt.audit.record("tool_call", tool="write_file", call_id=f"c{call}", args={"path": path}, ok=True)
        result["audit"].append(time.perf_counter() - started)
    return result


def engine_overhead(runs: int, tmp: Path) -> list[Figure]:
    means: list[float] = []
    p95s: list[float] = []
    maxes: list[float] = []
    cpus: list[float] = []
    floors: list[float] = []
    loads: list[float] = []
    for index in range(runs):
        loads.append(load_average())
        # The disk's speed drifts with the other tenants' I/O: measure its floor right next to each run.
        floors.append(1000 * statistics.fmean(_fsync_floor(tmp)))
        times, cpu = _emit_run(tmp, index)
        means.append(1000 * statistics.fmean(times))
        p95s.append(1000 * percentile(times, 95))
        maxes.append(1000 * max(times))
        cpus.append(1000 * cpu)
    note = f"{EVENTS:,} notice events into a real SessionLog ({len(DELTA_TEXT)} chars each), each fsynced"
    figures = [Figure("disk floor: write + fsync, mean", "ms", floors, loads, note="same bytes, bare os.write+fsync"),
               Figure("Engine._emit per event, mean", "ms", means, loads, 2.0, note=note),
               Figure("Engine._emit per event, p95", "ms", p95s, loads, 2.0, note=note),
               Figure("Engine._emit per event, max", "ms", maxes, loads, note=note),
               Figure("Engine._emit CPU per event", "ms", cpus, loads, note="process_time: the cost besides the disk")]
    fragments = [_emit_run(tmp, 100 + index, _fragment)[0] for index in range(runs)]
    note = (f"{EVENTS:,} assistant_delta events: written at once, fsynced at most every "
            f"{session_log.DELTA_SYNC_SECONDS} s")
    figures += [Figure("Engine._emit per streamed fragment, mean", "ms",
                       [1000 * statistics.fmean(times) for times in fragments], loads, note=note),
                Figure("Engine._emit per streamed fragment, p95", "ms",
                       [1000 * percentile(times, 95) for times in fragments], loads, note=note)]
    tool_loads: list[float] = []
    medians: dict[str, list[float]] = {}
    for index in range(runs):
        tool_loads.append(load_average())
        for key, values in _guarded_run(tmp, index).items():
            medians.setdefault(key, []).append(1000 * statistics.median(values))
    overhead = [g - p for g, p in zip(medians["guarded"], medians["plain"], strict=True)]
    note = f"write_file through the SDK tool wrapper, {WORKSPACE_FILES}-file workspace, median of {WRITES} writes"
    figures.append(Figure("guarded write: overhead over a plain write", "ms", overhead, tool_loads, note=note,
                          extra={key: values for key, values in medians.items()}))
    for key, label in (("guarded", "guarded write: total"), ("plain", "plain atomic write (baseline)"),
                       ("first", "guarded write: first of a session"), ("decide", "  policy decide"),
                       ("snapshot", "  checkpoint snapshot"), ("record_after", "  checkpoint record_after"),
                       ("audit", "  audit record")):
        figures.append(Figure(label, "ms", medians[key], tool_loads))
    return figures
