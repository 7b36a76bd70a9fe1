"""Acceptance: `agent-tui` started from a warm server (`agent-tui --warm-server`) in a real terminal (tmux).

The app must behave exactly as a cold start does (keys, approvals, exit code, hang-up, policy reload), run in a
child of the server, and fall back to a cold start whenever the server cannot serve this client.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_tui_tmux import (
    AGENT_TUI,
    ANSWER,
    CONNECTED,
    GOAL,
    NEW,
    OLD,
    PLAN,
    STARTUP_S,
    WRITE,
    quit_app,
    tui_env,
    wait_for_file,
)
from tests.e2e.tmux import TmuxTerminal, alive
from tests.fakes.model_server import Reply, ScriptedModelServer

pytestmark = pytest.mark.tmux


class WarmServer:
    """`agent-tui --warm-server` as a process, with what it prints."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        self._log_file = log.open("w")
        self.proc = subprocess.Popen([AGENT_TUI, "--warm-server"], env=env, stdout=subprocess.DEVNULL,
                                     stderr=self._log_file)
        self.wait_for_log("ready on")

    def output(self) -> str:
        return self.log.read_text()

    def wait_for_log(self, text: str, timeout: float = STARTUP_S) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            assert self.proc.poll() is None, f"the warm server exited: {self.output()}"
            assert time.monotonic() < deadline, f"the warm server never said {text!r}: {self.output()}"
            time.sleep(0.05)

    def children(self) -> list[int]:
        with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as children:
            return [int(pid) for pid in children.read().split()]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self._log_file.close()


@pytest.fixture
def terminal() -> Iterator[TmuxTerminal]:
    with TmuxTerminal() as term:
        yield term


@pytest.fixture
def warm_env(agent_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    env = tui_env(agent_env)
    env.update(AGENT_TUI_WARM="on", AGENT_TUI_SOCKET=str(tmp_path / "run" / "agent-tui.sock"))
    return env


@pytest.fixture
def warm_server(warm_env: dict[str, str], tmp_path: Path) -> Iterator[WarmServer]:
    server = WarmServer(warm_env, tmp_path / "warm-server.log")
    try:
        yield server
    finally:
        server.stop()


def umask_of(pid: int) -> str:
    with open(f"/proc/{pid}/status") as status:
        return next(line.split()[1] for line in status if line.startswith("Umask:"))


def app_pid(terminal: TmuxTerminal, server: WarmServer) -> int:
    """The app the server forked for the terminal's agent-tui (the program in the pane is the client)."""
    deadline = time.monotonic() + STARTUP_S
    while not server.children():
        assert time.monotonic() < deadline, f"the server started no app: {server.output()}"
        time.sleep(0.05)
    [pid] = server.children()
    return pid


def test_a_warm_start_runs_a_whole_task_and_exits_with_the_apps_code(
        terminal: TmuxTerminal, warm_server: WarmServer, warm_env: dict[str, str],
        model_server: ScriptedModelServer, workspace: Path) -> None:
    (workspace / "calc.py").write_text(OLD)
    model_server.add(Reply(tool_calls=[PLAN]), Reply(text="Fixing it.", tool_calls=[WRITE]), Reply(text=ANSWER))
    terminal.start(["sh", "-c", f"umask 027 && exec {AGENT_TUI}"], warm_env)
    terminal.wait_for(CONNECTED, STARTUP_S)
    app = app_pid(terminal, warm_server)
    assert app != terminal.program_pid()
    # The app runs in the client's directory, with its umask and environment, not the server's.
    assert os.readlink(f"/proc/{app}/cwd") == os.readlink(f"/proc/{terminal.program_pid()}/cwd")
    assert umask_of(app) == umask_of(terminal.program_pid()) == "0027"
    terminal.type(GOAL)
    terminal.send("Enter")
    terminal.wait_for(r"Approve write to calc\.py\?", 30)
    terminal.send("y")
    terminal.wait_for(re.escape(ANSWER), 30)
    wait_for_file(workspace / "calc.py", NEW)
    assert quit_app(terminal) == 0
    assert not alive(app)
    # The server stays up for the next agent-tui.
    terminal.start([AGENT_TUI, "--continue"], warm_env)
    terminal.wait_for(r"session resumed", STARTUP_S)
    # The newest messages are painted first and older ones filled in above them within a fraction of a second.
    terminal.wait_for(re.escape(GOAL), 10)
    terminal.wait_for(re.escape(ANSWER), 10)
    assert quit_app(terminal) == 0
    assert warm_server.output().count("started process") == 2


def test_the_window_size_follows_the_terminal(terminal: TmuxTerminal, warm_server: WarmServer,
                                               warm_env: dict[str, str]) -> None:
    terminal.start([AGENT_TUI], warm_env, size=(120, 40))
    terminal.wait_for(CONNECTED, STARTUP_S)
    terminal._tmux("resize-window", "-t", terminal.SESSION, "-x", "50", "-y", "12")
    terminal.wait_for(r"terminal too small")
    assert quit_app(terminal) == 0


def test_other_textual_settings_start_cold(terminal: TmuxTerminal, warm_server: WarmServer,
                                           warm_env: dict[str, str]) -> None:
    env = {**warm_env, "TEXTUAL_THEME": "textual-light"}
    terminal.start([AGENT_TUI], env)
    terminal.wait_for(CONNECTED, STARTUP_S)
    assert warm_server.children() == []
    assert "Textual settings differ" in warm_server.output()
    assert quit_app(terminal) == 0


def test_no_server_starts_cold(terminal: TmuxTerminal, warm_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "agent-tui.sock").write_text("not a socket")
    terminal.start([AGENT_TUI], warm_env)
    terminal.wait_for(CONNECTED, STARTUP_S)
    assert quit_app(terminal) == 0


def test_a_killed_app_gives_the_terminal_back(terminal: TmuxTerminal, warm_server: WarmServer,
                                              warm_env: dict[str, str]) -> None:
    terminal.start([AGENT_TUI], warm_env)
    terminal.wait_for(CONNECTED, STARTUP_S)
    os.kill(app_pid(terminal, warm_server), signal.SIGKILL)
    assert terminal.exit_code(STARTUP_S) == 1
    screen = terminal.screen()
    assert "ended without an exit code" in screen and "agent-tui --continue" in screen, screen


def test_a_policy_reload_keeps_the_app_and_a_hang_up_ends_it(
        terminal: TmuxTerminal, warm_server: WarmServer, warm_env: dict[str, str], workspace: Path,
        state_dir: Path) -> None:
    terminal.start([AGENT_TUI], warm_env)
    terminal.wait_for(CONNECTED, STARTUP_S)
    app = app_pid(terminal, warm_server)
    os.kill(app, signal.SIGHUP)  # what `agent policies reload` sends
    time.sleep(1.0)
    assert alive(app), "a policy reload ended the warm-started app"
    terminal.type("still here")
    terminal.wait_for("still here")
    client = terminal.program_pid()
    terminal.hang_up()
    deadline = time.monotonic() + 20
    while alive(app) or alive(client):
        assert time.monotonic() < deadline, "the app kept running after its terminal closed"
        time.sleep(0.05)
    assert warm_server.proc.poll() is None, "the server must outlive its apps"


def test_doctor_says_the_warm_server_is_ready(warm_server: WarmServer, warm_env: dict[str, str]) -> None:
    agent = str(Path(AGENT_TUI).with_name("agent"))
    done = subprocess.run([agent, "doctor", "--quick"], env=warm_env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"OK   warm start: server {warm_server.proc.pid} ready on" in done.stdout, done.stdout
    assert warm_server.children() == [], "a ping starts no app"
