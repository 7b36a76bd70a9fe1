"""Acceptance: the real `agent-tui` process in a real terminal (tmux), driven by key presses like a person would."""

from __future__ import annotations

import re
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.events import AssistantMessage, RunFinished, RunStarted, SessionStarted, UserMessage
from core.session_log import SessionStore
from tests.e2e.tmux import TmuxTerminal, alive
from tests.fakes.model_server import Reply, ScriptedModelServer, ToolCall

pytestmark = [pytest.mark.tmux, pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")]

AGENT_TUI = str(Path(sys.executable).with_name("agent-tui"))
# Importing the SDK after the first frame takes seconds on a loaded machine: waits that include it are generous.
STARTUP_S = 60.0
OLD = "def add(a, b):\n    return a - b\n"
NEW = "def add(a, b):\n    return a + b\n"
GOAL = "fix add in calc.py"
ANSWER = "add() adds now."
PLAN = ToolCall("update_plan", {"steps": [{"title": "Read calc.py", "status": "done"},
                                          {"title": "Fix add()", "status": "in_progress"}]})
WRITE = ToolCall("write_file", {"path": "calc.py", "content": NEW})
FIRST_FRAME = r"\^q Quit"
# The status bar shows "model: default" until the engine has reached the endpoint and named the model.
CONNECTED = r"│ scripted-model │"


@pytest.fixture
def terminal() -> Iterator[TmuxTerminal]:
    with TmuxTerminal() as term:
        yield term


def tui_env(agent_env: dict[str, str], term: str = "xterm-256color") -> dict[str, str]:
    """The process environment with only the terminal settings the test chooses (none leak in from the host)."""
    env = {k: v for k, v in agent_env.items()
           if not k.startswith("TEXTUAL") and k not in ("COLORTERM", "TMUX", "TMUX_PANE", "NO_COLOR")}
    env.update(TERM=term, ESCDELAY="25", AGENT_REVIEW_ROUNDS="0")
    return env


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_file(path: Path, content: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text() == content):
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never got the expected content")
        time.sleep(0.05)


def quit_app(terminal: TmuxTerminal) -> int:
    terminal.send("C-q")
    return terminal.exit_code(STARTUP_S)


def test_approve_a_write_quit_and_resume_it_from_the_picker(
        terminal: TmuxTerminal, model_server: ScriptedModelServer, agent_env: dict[str, str],
        workspace: Path) -> None:
    (workspace / "calc.py").write_text(OLD)
    model_server.add(Reply(tool_calls=[PLAN]), Reply(text="Fixing it.", tool_calls=[WRITE]), Reply(text=ANSWER))
    env = tui_env(agent_env)
    terminal.start([AGENT_TUI], env)
    terminal.wait_for(FIRST_FRAME)
    terminal.wait_for(CONNECTED, STARTUP_S)
    terminal.type(GOAL)
    terminal.send("Enter")
    terminal.wait_for(r"Approve write to calc\.py\?", 30)
    screen = terminal.screen()
    assert re.search(r"-\s+return a - b", screen) and re.search(r"\+\s+return a \+ b", screen), screen
    assert (workspace / "calc.py").read_text() == OLD, "nothing is written before the approval"
    terminal.send("y")
    terminal.wait_for(re.escape(ANSWER), 30)
    terminal.wait_for(r"last turn \d+:\d\d")  # the status bar's mark of a finished run
    wait_for_file(workspace / "calc.py", NEW)
    screen = terminal.wait_for(r"✓ write_file calc\.py").string
    assert "Fix add()" in screen and "Approve write" not in screen
    assert quit_app(terminal) == 0

    terminal.start([AGENT_TUI, "--resume"], env)
    terminal.wait_for(re.escape(GOAL), STARTUP_S)  # the picker lists the session by its goal
    terminal.send("Enter")
    terminal.wait_for(r"session resumed", STARTUP_S)
    # The newest messages are painted first and older ones filled in above them within a fraction of a second.
    terminal.wait_for(re.escape(GOAL), 10)
    terminal.wait_for(re.escape(ANSWER), 10)
    assert quit_app(terminal) == 0


def record_session(store: SessionStore, workspace: Path, goal: str, answer: str) -> str:
    session = store.create(workspace=workspace, model="scripted-model")
    for event in (SessionStarted(session_id=session.id, workspace=str(workspace), model="scripted-model"),
                  UserMessage(text=goal), RunStarted(run_id="r1", goal=goal),
                  AssistantMessage(message_id="m1", text=answer), RunFinished(run_id="r1", status="done")):
        session.append(event)
    session.close()
    return session.id


def test_continue_opens_the_latest_session_and_plain_xterm_still_gets_256_colours(
        terminal: TmuxTerminal, agent_env: dict[str, str], workspace: Path, state_dir: Path) -> None:
    store = SessionStore(state_dir)
    older = record_session(store, workspace, "the older goal", "the older answer")
    record_session(store, workspace, "the newer goal", "the newer answer")
    store.open(older).update_meta(updated=time.time() - 3600)
    terminal.start([AGENT_TUI, "--continue"], tui_env(agent_env, term="xterm"))
    terminal.wait_for(r"session resumed", STARTUP_S)
    terminal.wait_for("the newer goal", 10)
    screen = terminal.wait_for("the newer answer", 10).string
    assert "the older" not in screen
    colours = [int(n) for n in re.findall(r"[34]8;5;(\d+)", terminal.screen(colours=True))]
    assert any(n >= 16 for n in colours), "TERM=xterm is painted with 16 colours only"
    assert quit_app(terminal) == 0


def test_a_tiny_window_says_the_terminal_is_too_small(terminal: TmuxTerminal, agent_env: dict[str, str]) -> None:
    terminal.start([AGENT_TUI], tui_env(agent_env), size=(50, 12))
    terminal.wait_for(r"terminal too small")
    assert quit_app(terminal) == 0


def test_an_unreachable_endpoint_shows_the_banner_and_r_retries(
        terminal: TmuxTerminal, agent_env: dict[str, str]) -> None:
    port = closed_port()
    env = tui_env(agent_env)
    env["OPENAI_BASE_URL"] = f"http://127.0.0.1:{port}/v1"
    terminal.start([AGENT_TUI], env)
    screen = terminal.wait_for(r"cannot start:", STARTUP_S).string
    assert "fix:" in screen and "press r" in screen, screen
    with ScriptedModelServer(model_id="scripted-model", port=port):
        terminal.send("r")
        screen = terminal.wait_for(CONNECTED, STARTUP_S).string
        assert "cannot start:" not in screen
        assert quit_app(terminal) == 0


def test_closing_the_terminal_ends_the_app_and_frees_the_session(
        terminal: TmuxTerminal, agent_env: dict[str, str], workspace: Path, state_dir: Path) -> None:
    # SIGHUP also reloads the policies: a hangup must still end the app, or it keeps the session locked.
    terminal.start([AGENT_TUI], tui_env(agent_env))
    terminal.wait_for(CONNECTED, STARTUP_S)
    pid = terminal.program_pid()
    terminal.hang_up()
    deadline = time.monotonic() + 20
    while alive(pid):
        assert time.monotonic() < deadline, "agent-tui kept running after its terminal closed"
        time.sleep(0.05)
    summary = SessionStore(state_dir).latest(workspace)
    assert summary is not None
    session = SessionStore(state_dir).open(summary.id)
    session.acquire()  # refused while another live process holds the session
    session.close()
