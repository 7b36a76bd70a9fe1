"""Resume of a 10,000-event session and the session picker over 1,000 sessions (fresh processes)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.benchmarks.common import (
    REPO,
    VENV_BIN,
    Figure,
    ModelServerProcess,
    Tmux,
    agent_env,
    load_average,
    rss_mb,
    stop_tui,
    tmux_server,
    wait_until,
)
from tests.benchmarks.workloads import LAST_ANSWER_MARK, make_sessions, write_long_session

EVENTS = 10_000
SESSIONS = 1000
RSS_SETTLE_S = 1.0


def _probe(*args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "tests.benchmarks.probe", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"probe {args[0]} failed: {done.stderr[-800:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def resume(runs: int, tmp: Path) -> list[Figure]:
    workspace = tmp / "ws"
    workspace.mkdir()
    state = tmp / "state-long"
    session_id = write_long_session(state, workspace, EVENTS)
    probes: list[dict[str, Any]] = []
    loads: list[float] = []
    for _ in range(runs):
        loads.append(load_average())
        probes.append(_probe("resume", str(state), session_id))
    if not all(p["last_message_shown"] for p in probes):
        raise RuntimeError("the replayed transcript did not show the session's last answer")
    note = f"{EVENTS:,}-event log ({_size_mb(state):.1f} MB), fresh process, headless 120x40"
    figures = [
        Figure("resume: SessionStore.open + read_events", "s", [p["open_s"] + p["read_s"] for p in probes], loads,
               note=note),
        Figure("resume: TUI replay until last message shown", "s", [p["replay_s"] for p in probes], loads,
               note="DevAgentApp over an engine double holding the events (run_test start -> painted)"),
        Figure("resume: open + read + replay (headless)", "s", [p["resume_s"] for p in probes], loads, 1.0,
               note="imports excluded"),
        Figure("resume: every replayed message mounted (headless)", "s", [p["filled_s"] for p in probes], loads,
               note="imports excluded; the older messages are filled in above the newest after the first paint"),
        Figure("resume: CPU-s of the replay (headless)", "s", [p["replay_cpu_s"] for p in probes], loads,
               note="process CPU from run_test start to painted: app start-up + replay, steadier than wall"),
        Figure("resume: RSS after replay (headless)", "MB", [p["rss_mb"] for p in probes], loads, 200),
    ]
    return figures + _resume_tmux(runs, tmp, state, session_id)


def resume_in_tmux(tmux: Tmux, env: dict[str, str], state: Path, session_id: str, runs: int, tmp: Path, *,
                   app_of: Callable[[int], int] = lambda client: client, rss: bool = True) -> dict[str, list[float]]:
    """`agent-tui --resume ID` in tmux 120x40, each run over its own copy of `state` (resuming records
    session_resumed): spawn -> the last answer on screen, -> the engine connected, and the RSS of the app
    (`app_of` finds it for the spawned agent-tui) once it settled."""
    readings: dict[str, list[float]] = {"shown": [], "ready": [], "rss": [], "loads": []}
    for index in range(runs):
        copy = tmp / f"state-copy-{index}"
        shutil.copytree(state, copy)
        readings["loads"].append(load_average())
        name, spawned = tmux.spawn([str(VENV_BIN / "agent-tui"), "--resume", session_id],
                                   {**env, "AGENT_STATE_DIR": str(copy)}, (120, 40))
        client = tmux.pid(name)
        try:
            wait_until(lambda name=name: LAST_ANSWER_MARK in tmux.capture(name), 120, "the last answer")
            readings["shown"].append(time.perf_counter() - spawned)
            app = app_of(client)
            # The log is shown before the engine is up: the resume is complete once the engine is connected.
            # The engine records session_resumed when it is up (the log holds none before).
            wait_until(lambda name=name: "session resumed" in tmux.capture(name)
                       and "connecting" not in tmux.capture(name), 120, "the engine to start")
            readings["ready"].append(time.perf_counter() - spawned)
            if rss:
                time.sleep(RSS_SETTLE_S)
                readings["rss"].append(rss_mb(app))
        finally:
            stop_tui(tmux, name, client)
        shutil.rmtree(copy, ignore_errors=True)
    return readings


def _resume_tmux(runs: int, tmp: Path, state: Path, session_id: str) -> list[Figure]:
    """The real thing: `agent-tui --resume ID` in tmux, spawn -> the session's last answer on screen."""
    with ModelServerProcess([], tmp) as server, tmux_server() as tmux:
        readings = resume_in_tmux(tmux, agent_env(server.url, tmp / "ws", state), state, session_id, runs, tmp)
    loads = readings["loads"]
    note = "agent-tui --resume in tmux 120x40, spawn -> last answer on screen (includes start-up)"
    return [Figure("resume: agent-tui --resume, spawn -> last answer (tmux)", "s", readings["shown"], loads,
                   note=note),
            Figure("resume: agent-tui --resume, spawn -> engine connected (tmux)", "s", readings["ready"], loads,
                   note="the SDK imported, the endpoint checked, the session locked: ready for a new message"),
            Figure("resume: RSS after resume (tmux)", "MB", readings["rss"], loads, 200, note="engine connected")]


def picker(runs: int, tmp: Path) -> list[Figure]:
    workspace = tmp / "ws"
    workspace.mkdir()
    state = tmp / "state-sessions"
    make_sessions(state, workspace, SESSIONS)
    probes: list[dict[str, Any]] = []
    loads: list[float] = []
    for _ in range(runs):
        loads.append(load_average())
        probes.append(_probe("picker", str(state), str(workspace)))
    note = f"{SESSIONS:,} sessions; ctrl+r -> SessionPickerScreen painted with every row (Pilot, 120x40)"
    return [
        Figure("picker: SessionStore.list() (1,000 sessions)", "s", [p["list_s"] for p in probes], loads,
               note="meta.json only, cold process"),
        Figure("picker: open, first time in the process", "s", [p["open_cold_s"] for p in probes], loads, 0.3,
               note=note + "; includes list() in a thread and the screen's imports"),
        Figure("picker: open again", "s", [p["open_warm_s"] for p in probes], loads, 0.3, note=note),
    ]


def _size_mb(state: Path) -> float:
    return sum(path.stat().st_size for path in state.rglob("events.jsonl")) / 1e6
