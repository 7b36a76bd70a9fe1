"""Benchmark inputs: a state directory with many sessions, and one long realistic session log."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

from core.events import (
    AssistantDelta,
    AssistantMessage,
    Event,
    FileChanged,
    PlanStep,
    PlanUpdated,
    RunFinished,
    RunStarted,
    SessionStarted,
    ToolCallDelta,
    ToolCallFinished,
    ToolCallRequested,
    ToolCallStarted,
    Usage,
    UserMessage,
)
from core.session_log import SessionMeta, SessionStore

LAST_ANSWER_MARK = "FINAL-ANSWER-OF-THE-LONG-SESSION"
STATUSES = ("done", "done", "done", "failed", "paused", "interrupted", "cancelled", "new")
WORDS = ("the", "function", "returns", "a", "list", "of", "paths", "test", "fails", "because", "config", "is",
         "read", "before", "workspace", "resolved", "we", "should", "fix", "`load()`", "**now**", "and", "then")


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def _answer(rng: random.Random, chars: int) -> str:
    """Assistant-like markdown: paragraphs, a bullet list and a code fence."""
    parts: list[str] = []
    while sum(len(p) for p in parts) < chars:
        kind = rng.random()
        if kind < 0.6:
            parts.append(" ".join(_sentence(rng, rng.randint(6, 16)) for _ in range(3)))
        elif kind < 0.85:
            parts.append("\n".join(f"- {_sentence(rng, rng.randint(3, 8))}" for _ in range(4)))
        else:
            parts.append("```python\ndef load(path):\n    return read(path).splitlines()\n```")
    return "\n\n".join(parts)


def _diff(rng: random.Random, path: str) -> str:
    lines = [f"--- a/{path}", f"+++ b/{path}", "@@ -10,7 +10,8 @@"]
    for _ in range(rng.randint(6, 30)):
        mark = rng.choice(" -+")
        lines.append(f"{mark}    {_sentence(rng, rng.randint(3, 9)).lower()}")
    return "\n".join(lines) + "\n"


def long_session_events(count: int = 10_000, seed: int = 7) -> list[Event]:
    """`count` events of a long working session: runs with plans, tool calls, streamed answers and usage."""
    rng = random.Random(seed)
    events: list[Event] = [SessionStarted(session_id="bench", workspace="/work/ws", model="qwen2.5-coder-7b")]
    run = 0
    while len(events) < count:
        run += 1
        goal = f"run {run}: " + _sentence(rng, 10)
        events += [UserMessage(text=goal), RunStarted(run_id=f"r{run}", goal=goal)]
        steps = [PlanStep(title=_sentence(rng, 5), status=rng.choice(("done", "in_progress", "pending")))
                 for _ in range(rng.randint(3, 6))]
        events.append(PlanUpdated(steps=steps))
        for call in range(rng.randint(2, 5)):
            call_id = f"call-{run}-{call}"
            tool = rng.choice(("read_file", "edit_file", "run_command", "write_file", "search_files"))
            path = f"src/module_{rng.randint(1, 60)}.py"
            arguments = json.dumps({"path": path, "old_text": _sentence(rng, 8), "new_text": _sentence(rng, 8)})
            events.append(ToolCallStarted(call_id=call_id, tool=tool))
            events += [ToolCallDelta(call_id=call_id, text=arguments[i:i + 60]) for i in range(0, len(arguments), 60)]
            events.append(ToolCallRequested(call_id=call_id, tool=tool, arguments=arguments))
            editing = tool in ("edit_file", "write_file")
            events.append(ToolCallFinished(
                call_id=call_id, tool=tool, ok=True, duration_ms=rng.uniform(5, 2000),
                output_preview="\n".join(_sentence(rng, 8) for _ in range(rng.randint(3, 25))),
                output_chars=rng.randint(100, 20_000), diff=_diff(rng, path) if editing else None))
            if editing:
                events.append(FileChanged(path=path, checkpoint=f"{rng.getrandbits(160):040x}"))
        answer = _answer(rng, rng.randint(800, 4000))
        size = rng.randint(60, 200)
        message_id = f"msg-{run}"
        events += [AssistantDelta(message_id=message_id, text=answer[i:i + size])
                   for i in range(0, len(answer), size)]
        events.append(AssistantMessage(message_id=message_id, text=answer))
        events.append(Usage(input_tokens=5000 * run, output_tokens=700 * run, total_tokens=5700 * run,
                            requests=3 * run, context_used=rng.randint(2000, 30000), context_limit=32768))
        events.append(RunFinished(run_id=f"r{run}", status="done", turns=rng.randint(1, 6)))
    events = events[:count - 3]
    # The session ends with a complete run whose answer is recognisable on screen.
    events += [UserMessage(text="last goal"),
               AssistantMessage(message_id="msg-last", text=f"All done. {LAST_ANSWER_MARK}"),
               RunFinished(run_id="last", status="done", turns=1)]
    start = time.time() - count
    for seq, event in enumerate(events, 1):
        event.seq, event.ts = seq, start + seq
    return events


def write_long_session(state_dir: Path, workspace: Path, count: int = 10_000) -> str:
    """A session holding `count` events (written in one go, then meta rebuilt by repair); its id."""
    store = SessionStore(state_dir)
    log = store.create(workspace=workspace, model="qwen2.5-coder-7b", base_url="http://127.0.0.1:9/v1",
                       client="bench")
    events = long_session_events(count)
    events[0] = events[0].model_copy(update={"session_id": log.id, "workspace": str(workspace.resolve())})
    log.events_path.write_text("".join(event.to_json() + "\n" for event in events), encoding="utf-8")
    log.close()
    store.repair(log.id)
    return log.id


def make_sessions(state_dir: Path, workspace: Path, count: int, seed: int = 3) -> None:
    """`count` small sessions (meta.json + a few events), a tenth of them from another workspace."""
    rng = random.Random(seed)
    root = state_dir / "sessions"
    root.mkdir(parents=True, exist_ok=True)
    if sum(1 for _ in root.iterdir()) >= count:
        return
    now = time.time()
    for index in range(count):
        updated = now - rng.uniform(0, 90 * 86400)
        session_id = time.strftime("%Y%m%d-%H%M%S", time.gmtime(updated)) + f"-{index:06x}"
        directory = root / session_id
        directory.mkdir()
        other = index % 10 == 0
        goal = _sentence(rng, rng.randint(4, 14))
        meta = SessionMeta(id=session_id, title=goal[:80], goal=goal,
                           workspace="/elsewhere/project" if other else str(workspace.resolve()),
                           model="qwen2.5-coder-7b", status=rng.choice(STATUSES), created=updated - 600,
                           updated=updated, event_count=5, last_seq=5, client="bench")
        (directory / "meta.json").write_text(meta.model_dump_json(indent=2))
        lines = [SessionStarted(seq=1, ts=updated - 600, session_id=session_id, workspace=meta.workspace),
                 UserMessage(seq=2, ts=updated - 590, text=goal),
                 RunStarted(seq=3, ts=updated - 589, run_id="r1", goal=goal),
                 AssistantMessage(seq=4, ts=updated - 10, message_id="m1", text=_sentence(rng, 12)),
                 RunFinished(seq=5, ts=updated, run_id="r1", status="done")]
        (directory / "events.jsonl").write_text("".join(e.to_json() + "\n" for e in lines))
