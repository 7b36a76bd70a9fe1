"""Warm-start figures: `agent-tui` started from `agent-tui --warm-server` (the container's command) in tmux."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.benchmarks.common import (
    VENV_BIN,
    Figure,
    ModelServerProcess,
    Tmux,
    agent_env,
    children,
    connected,
    ensure_dir,
    load_average,
    pss_mb,
    rss_mb,
    stop_tui,
    tmux_server,
    wait_until,
)
from tests.benchmarks.resume import resume_in_tmux
from tests.benchmarks.startup import SIZES, one_start
from tests.benchmarks.workloads import write_long_session

RESUME_EVENTS = 10_000


@contextmanager
def warm_server(env: dict[str, str], tmp: Path) -> Iterator[subprocess.Popen[str]]:
    log = tmp / "warm-server.log"
    with log.open("w") as output:
        server = subprocess.Popen([str(VENV_BIN / "agent-tui"), "--warm-server"], env=env, stderr=output, text=True)
    try:
        wait_until(lambda: "ready on" in log.read_text(), 120, "the warm server to be ready", 0.05)
        yield server
    finally:
        server.terminate()
        server.wait(10)


def _app(server: int) -> int:
    """The app the server forked; none means the client started cold (the server log says why)."""
    apps = children(server)
    if len(apps) != 1:
        raise RuntimeError(f"expected one warm-started app, found {len(apps)}: see the warm server's log "
                           "(code edited while it ran makes it restart, and clients start cold meanwhile)")
    return apps[0]


def _one_warm_start(tmux: Tmux, server: int, env: dict[str, str], size: tuple[int, int]
                    ) -> tuple[float, float, float, float]:
    """startup.one_start with the CPU-s of the app the server forked; then waits for that app to end."""
    try:
        return one_start(tmux, env, size, app_of=lambda _client: _app(server))
    finally:
        wait_until(lambda: not children(server), 10, "the app to end")


def warm_start(runs: int, tmp: Path) -> list[Figure]:
    figures: list[Figure] = []
    with ModelServerProcess([], tmp) as model, tmux_server() as tmux:
        env = agent_env(model.url, ensure_dir(tmp / "ws"), ensure_dir(tmp / "state-warm"))
        env.update(AGENT_TUI_WARM="on", AGENT_TUI_SOCKET=str(ensure_dir(tmp / "run") / "agent-tui.sock"))
        with warm_server(env, tmp) as server:
            for size in SIZES:
                _one_warm_start(tmux, server.pid, env, size)  # warm-up, as for the cold start
                readings = []
                loads: list[float] = []
                for _ in range(runs):
                    loads.append(load_average())
                    readings.append(_one_warm_start(tmux, server.pid, env, size))
                first, ready, engine, cpu = (list(column) for column in zip(*readings, strict=True))
                label = f"{size[0]}x{size[1]}"
                note = "agent-tui --warm-server running; tmux spawn of agent-tui -> "
                figures += [
                    Figure(f"warm start -> first frame ({label})", "s", first, loads, 0.35, note=note + "app text"),
                    Figure(f"warm start -> interactive ({label})", "s", ready, loads, 1.0,
                           note=note + "a key sent at first frame shows in the input box"),
                    Figure(f"warm start -> engine connected ({label})", "s", engine, loads,
                           note=note + "the endpoint's model id in the status bar"),
                    Figure(f"warm start: CPU-s of the app at its first frame ({label})", "s", cpu, loads,
                           note="the forked app's utime+stime"),
                ]
            figures += _idle_memory(tmux, server.pid, env)
            figures += _resume(runs, tmux, server.pid, env, tmp)
    return figures


def _resume(runs: int, tmux: Tmux, server: int, env: dict[str, str], tmp: Path) -> list[Figure]:
    """`agent-tui --resume ID` of a 10,000-event session, warm: as resume.py measures it cold."""
    state = tmp / "state-long"
    session_id = write_long_session(state, Path(env["AGENT_WORKSPACE"]), RESUME_EVENTS)
    readings = resume_in_tmux(tmux, env, state, session_id, runs, tmp, app_of=lambda _client: _app(server),
                              rss=False)
    loads = readings["loads"]
    note = f"agent-tui --resume of a {RESUME_EVENTS:,}-event session, warm, tmux 120x40"
    return [Figure("warm resume: spawn -> last answer (tmux)", "s", readings["shown"], loads, note=note),
            Figure("warm resume: spawn -> engine connected (tmux)", "s", readings["ready"], loads, note=note)]


def _idle_memory(tmux: Tmux, server: int, env: dict[str, str], settle_s: float = 10.0) -> list[Figure]:
    name, _spawned = tmux.spawn([str(VENV_BIN / "agent-tui")], env, (120, 40))
    client = tmux.pid(name)
    try:
        wait_until(lambda: connected(tmux.capture(name)), 20, "the engine to start")
        time.sleep(settle_s)
        app = _app(server)
        loads = [load_average()]
        rss, pss, server_rss, client_rss = rss_mb(app), pss_mb(app), rss_mb(server), rss_mb(client)
    finally:
        stop_tui(tmux, name, client)
    note = f"{settle_s:.0f} s after the engine started, 120x40"
    return [
        Figure("warm app idle RSS (pages shared with the server included)", "MB", [rss], loads, 120, note=note),
        Figure("warm app idle PSS (shared pages counted by share)", "MB", [pss], loads, note=note),
        Figure("warm server RSS (one for all apps)", "MB", [server_rss], loads, note=note),
        Figure("warm client RSS (the agent-tui in the terminal)", "MB", [client_rss], loads, note=note),
    ]
