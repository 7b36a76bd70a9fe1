"""Crash trials: a real `agent run` SIGKILLed at a random point of a scripted multi-tool run, checked, resumed."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.session_log import SessionStore
from tests.fakes.model_server import Reply, ScriptedModelServer, ToolCall

REPO = Path(__file__).resolve().parents[2]
GOAL = "update notes: write a.txt, check it, edit it, write b.txt"
NOTES = "notes before the run\n"


@dataclass(frozen=True)
class Step:
    """One scripted tool call; `writes` is (path, content on disk after it) for a file change."""

    key: str
    tool: str
    args: dict[str, Any]
    writes: tuple[str, str] | None = None


STEPS = (
    Step("plan", "update_plan", {"steps": [{"title": "Write a.txt", "status": "in_progress"},
                                           {"title": "Write b.txt", "status": "pending"}]}),
    Step("read", "read_file", {"path": "notes.txt"}),
    Step("w1", "write_file", {"path": "a.txt", "content": "alpha v1\n"}, ("a.txt", "alpha v1\n")),
    Step("cmd", "run_command", {"command": "echo checked"}),
    Step("edit", "edit_file", {"path": "a.txt", "old_text": "v1", "new_text": "v2"}, ("a.txt", "alpha v2\n")),
    Step("w2", "write_file", {"path": "b.txt", "content": "bravo\n"}, ("b.txt", "bravo\n")),
)
ASK_STEPS = STEPS[:3]
FINAL = "All done: a.txt and b.txt are written."
WRITE_TOOLS = ("write_file", "edit_file")


class ScriptedAgent:
    """Plays the model from the conversation it is sent: the next step whose result it has not seen yet.

    Call ids carry the request number, so a step repeated after a crash is a new call, as it would be
    from a real model. It also records conversations a strict server would reject (a tool call
    without its result), which is what a resumed run must never send.
    """

    def __init__(self, steps: tuple[Step, ...]) -> None:
        self.steps = steps
        self.malformed: list[str] = []
        self._lock = threading.Lock()
        self._count = 0

    def __call__(self, request: dict[str, Any]) -> Reply:
        messages = request.get("messages", [])
        answered = {m.get("tool_call_id") for m in messages if m.get("role") == "tool"}
        for m in messages:
            for call in m.get("tool_calls") or []:
                if call.get("id") not in answered:
                    with self._lock:
                        self.malformed.append(f"tool call {call.get('id')} sent without its result")
        done = {str(cid).split("-")[0] for cid in answered if cid}
        with self._lock:
            self._count += 1
            number = self._count
        step = next((s for s in self.steps if s.key not in done), None)
        if step is None:
            return Reply(text=FINAL)
        return Reply(tool_calls=[ToolCall(step.tool, step.args, id=f"{step.key}-{number}")])


def agent_env(server_url: str, workspace: Path, state_dir: Path, mode: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT_", "OPENAI_")) and k != "ALLOW_NET"}
    env.update({"OPENAI_BASE_URL": server_url, "OPENAI_API_KEY": "test-key", "AGENT_WORKSPACE": str(workspace),
                "AGENT_STATE_DIR": str(state_dir), "AGENT_TOOLS_DIR": str(state_dir / "tools"),
                "AGENT_APPROVAL": mode, "AGENT_REVIEW_ROUNDS": "0", "PYTHONPATH": str(REPO)})
    return env


def agent_bin() -> str:
    return str(Path(sys.executable).with_name("agent"))


def read_log(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The events of a log and its problems; a torn last line (the kill hit mid-write) is not a problem."""
    problems: list[str] = []
    events: list[dict[str, Any]] = []
    lines = path.read_bytes().split(b"\n") if path.exists() else []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            events.append(json.loads(line))
        except ValueError:
            if i < len(lines) - 1:
                problems.append(f"line {i + 1} is not JSON and is not the torn last line")
    seqs = [e.get("seq") for e in events]
    if seqs != list(range(1, len(seqs) + 1)):
        problems.append(f"seq is not 1..{len(seqs)}: {seqs}")
    return events, problems


def check_workspace(events: list[dict[str, Any]], workspace: Path, steps: tuple[Step, ...]) -> tuple[list[str], int]:
    """Problems, and how many changes reached the disk before their tool_call_finished did (the kill window).

    Every change on disk must at least have been requested in the log before it was made, and every
    change the log reports as done must still be on disk (or superseded by a later step's content).
    """
    problems: list[str] = []
    requested = {json.loads(e["arguments"] or "{}").get("path") for e in events
                 if e["type"] == "tool_call_requested" and e["tool"] in WRITE_TOOLS}
    finished_ok = [e for e in events if e["type"] == "tool_call_finished" and e["tool"] in WRITE_TOOLS
                   and e["status"] == "ok"]
    finished_paths = {p for e in events if e["type"] == "file_changed" for p in [e["path"]]}
    unlogged = 0
    for name in ("a.txt", "b.txt"):
        path = workspace / name
        if not path.exists():
            continue
        if name not in requested:
            problems.append(f"{name} changed on disk but no write to it was ever requested in the log")
        elif name not in finished_paths:
            unlogged += 1
    if (workspace / "notes.txt").read_text() != NOTES:
        problems.append("notes.txt changed though nothing writes it")
    by_key = {s.key: s for s in steps}
    for ev in finished_ok:
        step = by_key.get(ev["call_id"].split("-")[0])
        if step is None or step.writes is None:
            continue
        rel, _ = step.writes
        later = {s.writes[1] for s in steps[steps.index(step):] if s.writes and s.writes[0] == rel}
        on_disk = (workspace / rel).read_text() if (workspace / rel).exists() else None
        if on_disk not in later:
            problems.append(f"{step.key} finished ok but {rel} holds {on_disk!r}, not one of {sorted(later)}")
    return problems, unlogged


@dataclass
class TrialResult:
    kills: int = 0
    problems: list[str] = field(default_factory=list)
    unlogged_windows: int = 0  # changes on disk whose tool_call_finished the kill beat (allowed, counted)
    resumes: int = 0
    kill_points: list[str] = field(default_factory=list)


def spawn_and_kill(argv: list[str], env: dict[str, str], rng: random.Random, max_events: int) -> tuple[int, str]:
    """Start `argv`, SIGKILL it after a random number of printed events (or a random time); its exit code and how."""
    proc = subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL, text=True)
    timer: threading.Timer | None = None
    if rng.random() < 0.25:
        delay = rng.uniform(0.0, 4.0)
        point = f"after {delay:.2f} s"
        timer = threading.Timer(delay, lambda: _kill(proc))
        timer.start()
        target = None
    else:
        target = rng.randint(1, max_events)
        point = f"after event {target}"
    assert proc.stdout is not None
    for seen, _ in enumerate(proc.stdout, start=1):
        if target is not None and seen >= target:
            threading.Event().wait(rng.uniform(0.0, 0.03))
            _kill(proc)
            break
    proc.stdout.close()
    code = proc.wait()
    if timer is not None:
        timer.cancel()
    return code, point if code == -signal.SIGKILL else f"{point}: exited {code} first"


def _kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)


def crash_trial(base: Path, rng: random.Random, *, mode: str = "full-auto", kills: int = 1,
                cli_listing: int = 1) -> TrialResult:
    """One session: `kills` processes killed at random points, each followed by checks, then a resume to the end.

    `cli_listing` is how many of the checks also ask `agent sessions list --json` (a process each).
    """
    steps = ASK_STEPS if mode == "ask" else STEPS
    workspace, state_dir = base / "workspace", base / "state"
    workspace.mkdir(parents=True)
    state_dir.mkdir()
    (workspace / "notes.txt").write_text(NOTES)
    result = TrialResult()
    agent = ScriptedAgent(steps)
    with ScriptedModelServer(responder=agent) as server:
        env = agent_env(server.url, workspace, state_dir, mode)
        session_id: str | None = None
        for attempt in range(kills):
            argv = [agent_bin(), "run", "--json", *(["--resume", session_id] if session_id else [GOAL])]
            if session_id and _pending(state_dir, session_id):
                argv.append("--approve")
            code, point = spawn_and_kill(argv, env, rng, max_events=40)
            result.kills += code == -signal.SIGKILL
            result.kill_points.append(point)
            session_id = session_id or _only_session(state_dir)
            if session_id is None:
                continue  # killed before the session existed: the next process starts afresh
            result.problems += _check_after_kill(state_dir, session_id, workspace, steps, env,
                                                attempt < cli_listing, result)
        result.problems += _finish(env, state_dir, workspace, session_id, steps, result)
        result.problems += [f"resumed conversation: {m}" for m in dict.fromkeys(agent.malformed)]
    return result


def _only_session(state_dir: Path) -> str | None:
    rows = SessionStore(state_dir).list()
    return rows[0].id if rows else None


def _pending(state_dir: Path, session_id: str) -> bool:
    events, _ = read_log(state_dir / "sessions" / session_id / "events.jsonl")
    decided = {e["call_id"] for e in events if e["type"] == "approval_decided"}
    return any(e["type"] == "approval_requested" and e["call_id"] not in decided for e in events)


def _check_after_kill(state_dir: Path, session_id: str, workspace: Path, steps: tuple[Step, ...],
                      env: dict[str, str], cli_listing: bool, result: TrialResult) -> list[str]:
    problems: list[str] = []
    rows = {r.id: r for r in SessionStore(state_dir).list()}
    row = rows.get(session_id)
    if row is None or row.broken:
        problems.append(f"session {session_id} is not listed or is broken: {row and row.problem}")
    if cli_listing:
        listing = subprocess.run([agent_bin(), "sessions", "list", "--json"], env=env, capture_output=True,
                                 text=True, timeout=120)
        listed = [json.loads(line) for line in listing.stdout.splitlines() if line.strip()]
        if listing.returncode != 0 or not any(r["id"] == session_id and not r["broken"] for r in listed):
            problems.append(f"`agent sessions list --json` does not show {session_id} intact: {listing.stderr}")
    events, log_problems = read_log(state_dir / "sessions" / session_id / "events.jsonl")
    problems += log_problems
    ws_problems, unlogged = check_workspace(events, workspace, steps)
    result.unlogged_windows += unlogged
    problems += ws_problems
    requested = {e["call_id"] for e in events if e["type"] == "approval_requested"}
    decided = {e["call_id"] for e in events if e["type"] == "approval_decided"}
    if requested - decided and row is not None and not row.broken and row.status != "paused":
        problems.append(f"an approval is pending but the session is listed as {row.status}, not paused")
    return problems


def _finish(env: dict[str, str], state_dir: Path, workspace: Path, session_id: str | None,
            steps: tuple[Step, ...], result: TrialResult) -> list[str]:
    """Resume (approving whatever is pending) until the run is done; then the whole log and workspace are checked."""
    problems: list[str] = []
    done = None
    for _ in range(4):
        if session_id is None:
            argv = [agent_bin(), "run", "--json", GOAL]
        else:
            argv = [agent_bin(), "run", "--json", "--resume", session_id]
            if _pending(state_dir, session_id):
                argv.append("--approve")
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
        result.resumes += 1
        session_id = session_id or _only_session(state_dir)
        if done.returncode != 4:
            break
    if done is None or done.returncode != 0 or session_id is None:
        return [f"the resumed run did not finish: exit {done and done.returncode}: {done and done.stderr[-800:]}"]
    events, log_problems = read_log(state_dir / "sessions" / session_id / "events.jsonl")
    problems += log_problems
    finished = [e["call_id"] for e in events if e["type"] == "tool_call_finished"]
    if len(finished) != len(set(finished)):
        problems.append("a tool call finished twice in the log")
    last = [e for e in events if e["type"] == "run_finished"]
    if not last or last[-1]["status"] != "done":
        problems.append(f"the last run did not end done: {last[-1:]}")
    expected = {s.writes[0]: s.writes[1] for s in steps if s.writes}
    for rel, content in expected.items():
        on_disk = (workspace / rel).read_text() if (workspace / rel).exists() else None
        if on_disk != content:
            problems.append(f"after the resumed run {rel} holds {on_disk!r}, expected {content!r}")
    return problems
