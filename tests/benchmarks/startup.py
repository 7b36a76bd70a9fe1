"""Start-up figures: agent-tui cold start in a real pty, `agent` CLI wall times, and an idle agent-tui's cost."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.benchmarks.common import (
    VENV_BIN,
    Figure,
    ModelServerProcess,
    Tmux,
    agent_env,
    connected,
    cpu_seconds,
    ensure_dir,
    input_box,
    load_average,
    rss_mb,
    shows_app,
    stop_tui,
    tmux_server,
    wait_until,
)
from tests.benchmarks.workloads import make_sessions

SIZES = ((80, 24), (120, 40))
TYPED = "z"


def one_start(tmux: Tmux, env: dict[str, str], size: tuple[int, int],
              app_of: Callable[[int], int] = lambda client: client) -> tuple[float, float, float, float]:
    """Spawn -> first frame, -> a character typed at the first frame shows, -> engine connected, and CPU-s used by
    the first frame: of the spawned agent-tui, or of the app `app_of` finds for it (a warm start's fork)."""
    name, spawned = tmux.spawn([str(VENV_BIN / "agent-tui")], env, size)
    pid = tmux.pid(name)
    try:
        wait_until(lambda: shows_app(tmux.capture(name)), 20, "the first frame")
        first_frame = time.perf_counter() - spawned
        cpu = cpu_seconds(app_of(pid))
        tmux.send_text(name, TYPED)
        wait_until(lambda: TYPED in input_box(tmux.capture(name)), 20, "the typed character")
        interactive = time.perf_counter() - spawned
        wait_until(lambda: connected(tmux.capture(name)), 60, "the engine to start")
        engine = time.perf_counter() - spawned
    finally:
        stop_tui(tmux, name, pid)
    return first_frame, interactive, engine, cpu


def cold_start(runs: int, tmp: Path) -> list[Figure]:
    figures: list[Figure] = []
    with ModelServerProcess([], tmp) as server, tmux_server() as tmux:
        for size in SIZES:
            env = agent_env(server.url, ensure_dir(tmp / "ws"), ensure_dir(tmp / f"state-cold-{size[0]}"))
            one_start(tmux, env, size)  # warm-up: .pyc files and the page cache, as on a second launch
            frames: list[float] = []
            ready: list[float] = []
            engines: list[float] = []
            cpu: list[float] = []
            loads: list[float] = []
            for _ in range(runs):
                loads.append(load_average())
                first, interactive, engine, used = one_start(tmux, env, size)
                frames.append(first)
                ready.append(interactive)
                engines.append(engine)
                cpu.append(used)
            label = f"{size[0]}x{size[1]}"
            figures.append(Figure(f"cold start -> first frame ({label})", "s", frames, loads, 0.35,
                                  note="tmux spawn -> app text on screen (capture-pane every 10 ms)"))
            figures.append(Figure(f"cold start -> interactive ({label})", "s", ready, loads, 1.0,
                                  note="spawn -> a key sent at first frame shows in the input box"))
            figures.append(Figure(f"cold start -> engine connected ({label})", "s", engines, loads,
                                  note="spawn -> the endpoint's model id in the status bar (SDK imported)"))
            figures.append(Figure(f"cold start: CPU-s used by the first frame ({label})", "s", cpu, loads,
                                  note="utime+stime of agent-tui when its first frame was seen: load-independent"))
    return figures


def cli_wall_times(runs: int, tmp: Path) -> list[Figure]:
    state = ensure_dir(tmp / "state-cli")
    workspace = ensure_dir(tmp / "ws")
    make_sessions(state, workspace, 1000)
    env = agent_env("http://127.0.0.1:9/v1", workspace, state)
    figures = []
    for label, argv in (("agent --help", ["--help"]), ("agent sessions list (1,000 sessions)", ["sessions", "list"])):
        subprocess.run([str(VENV_BIN / "agent"), *argv], env=env, capture_output=True, check=True)
        values: list[float] = []
        loads: list[float] = []
        for _ in range(runs):
            loads.append(load_average())
            started = time.perf_counter()
            done = subprocess.run([str(VENV_BIN / "agent"), *argv], env=env, capture_output=True, text=True)
            values.append(time.perf_counter() - started)
            if done.returncode != 0:
                raise RuntimeError(f"agent {' '.join(argv)} failed: {done.stderr[-500:]}")
        figures.append(Figure(label, "s", values, loads, note="subprocess wall time"))
    return figures


def idle(runs: int, tmp: Path, settle_s: float = 10.0, sample_s: float = 10.0) -> list[Figure]:
    rss: list[float] = []
    cpu: list[float] = []
    loads: list[float] = []
    with ModelServerProcess([], tmp) as server, tmux_server() as tmux:
        env = agent_env(server.url, ensure_dir(tmp / "ws"), ensure_dir(tmp / "state-idle"))
        for _ in range(runs):
            name, _spawned = tmux.spawn([str(VENV_BIN / "agent-tui")], env, (120, 40))
            pid = tmux.pid(name)
            try:
                wait_until(lambda name=name: connected(tmux.capture(name)), 60, "the engine to start")
                time.sleep(settle_s)
                loads.append(load_average())
                before, started = cpu_seconds(pid), time.perf_counter()
                time.sleep(sample_s)
                cpu.append(100 * (cpu_seconds(pid) - before) / (time.perf_counter() - started))
                rss.append(rss_mb(pid))
            finally:
                stop_tui(tmux, name, pid)
    note = f"{settle_s:.0f} s after the engine started, /proc sampled over {sample_s:.0f} s, 120x40"
    return [Figure("idle agent-tui RSS", "MB", rss, loads, 120, note=note),
            Figure("idle agent-tui CPU", "%", cpu, loads, 1.0, note=note)]
