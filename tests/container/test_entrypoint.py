"""The image's runtime contract, run outside Docker: its ENV, HEALTHCHECK, ENTRYPOINT and CMD, and agent-tui
as `docker exec -it` starts it.

The final stage's ENV is read from the Dockerfile; /workspace, /state, /tools and the /opt/venv prefix are
mapped to a temporary root and this virtualenv, and everything runs with exactly that environment (`env -i`),
so a variable the image forgets to set is missing here too.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.container.dockerfile_model import exec_form, healthcheck, image_env, load
from tui.__main__ import NO_TTY_MESSAGE

VENV = Path(sys.prefix)
# The daemon adds TERM=xterm for `docker exec -t`, but only when the container's own env has no TERM
# (moby CreateDaemonEnvironment: "The defaults set here do not override the values in container.Config.Env").
DOCKER_EXEC_TTY_DEFAULTS = {"TERM": "xterm"}
FRAME_TIMEOUT_S = 20
EXIT_TIMEOUT_S = 30


@dataclass
class Container:
    root: Path
    env: dict[str, str]
    workdir: Path

    def which(self, command: str) -> str:
        found = shutil.which(command, path=self.env["PATH"])
        assert found, f"{command} is not on the image's PATH {self.env['PATH']}"
        return found


def _map_path(value: str, mapping: dict[str, Path]) -> str:
    for prefix, target in mapping.items():
        if value == prefix or value.startswith(prefix + "/"):
            return str(target) + value[len(prefix):]
    return value


@pytest.fixture
def container(tmp_path: Path) -> Container:
    final = load().final
    root = tmp_path / "root"
    mapping = {p: root / p.lstrip("/") for p in ("/workspace", "/state", "/tools")}
    mapping["/opt/venv"] = VENV
    for directory in ("/workspace", "/state", "/tools/bin"):
        Path(_map_path(directory, mapping)).mkdir(parents=True)
    env = {}
    for key, value in {**DOCKER_EXEC_TTY_DEFAULTS, **image_env(final)}.items():
        env[key] = ":".join(_map_path(p, mapping) for p in value.split(":")) if key == "PATH" else \
            _map_path(value, mapping)
    (root / "home").mkdir()
    env["HOME"] = str(root / "home")  # Docker sets HOME from /etc/passwd for the image's USER.
    return Container(root, env, Path(_map_path(final.last("WORKDIR").args, mapping)))


def test_the_mapped_environment_points_at_the_temporary_root(container: Container) -> None:
    """Guards the fixture: nothing in the test environment may still point at the real container paths."""
    assert container.env["AGENT_WORKSPACE"] == str(container.workdir)
    assert container.env["AGENT_STATE_DIR"] == str(container.root / "state")
    assert container.which("agent") == str(VENV / "bin" / "agent")
    assert container.env["TERM"] == "xterm-256color", "the image's TERM wins over docker exec's xterm"


# ------------------------------------------------------------------------------------------------ HEALTHCHECK


def _healthcheck(container: Container) -> subprocess.CompletedProcess[str]:
    options, command = healthcheck(load().final)
    assert {"interval", "timeout", "retries"} <= set(options)
    return subprocess.run([container.which(command[0]), *command[1:]], env=container.env, cwd=container.workdir,
                          capture_output=True, text=True, timeout=60)


def test_healthcheck_is_ok_without_the_model_endpoint(container: Container) -> None:
    # The image's OPENAI_BASE_URL (host.docker.internal) does not even resolve here: healthy all the same,
    # so the container is not flagged unhealthy while LM Studio is closed.
    proc = _healthcheck(container)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    for check in ("workspace", "state dir", "policies"):
        assert any(re.match(rf"OK\s+{check}:", line) for line in lines), f"no OK line for {check} in {lines}"
    assert not any("endpoint" in line for line in lines)


def test_healthcheck_fails_when_the_state_volume_is_unusable(container: Container) -> None:
    state = Path(container.env["AGENT_STATE_DIR"])
    state.rmdir()
    state.write_text("not a directory", encoding="utf-8")
    proc = _healthcheck(container)
    assert proc.returncode != 0
    assert any(line.startswith("FIX") and "state dir" in line for line in proc.stdout.splitlines()), proc.stdout


# --------------------------------------------------------------------------------------- ENTRYPOINT and CMD


def test_entrypoint_is_tini_and_the_command_is_the_warm_server() -> None:
    final = load().final
    assert exec_form(final.last("ENTRYPOINT").args) == ["/usr/bin/tini", "--"]
    assert exec_form(final.last("CMD").args) == ["agent-tui", "--warm-server"]


@pytest.mark.skipif(shutil.which("tini") is None, reason="tini is not installed here (apt-get install tini)")
def test_tini_keeps_the_warm_server_up_and_stops_on_sigterm(container: Container, tmp_path: Path) -> None:
    """`docker stop` sends SIGTERM to PID 1: with tini it ends at once instead of after the 10 s kill timeout."""
    final = load().final
    entrypoint = exec_form(final.last("ENTRYPOINT").args)
    assert shutil.which("tini") == entrypoint[0], "Debian's tini package installs /usr/bin/tini"
    command = exec_form(final.last("CMD").args)
    socket_file = tmp_path / "run" / "agent-tui.sock"
    log = tmp_path / "server.log"
    with log.open("w") as output:
        proc = subprocess.Popen([*entrypoint, container.which(command[0]), *command[1:]],
                                env={**container.env, "AGENT_TUI_SOCKET": str(socket_file)},
                                cwd=container.workdir, stderr=output)
    try:
        assert _poll(lambda: "ready on" in log.read_text(), 120), f"the warm server never got ready: {log.read_text()}"
        (server,) = _children(proc.pid)
        assert socket_file.is_socket()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=EXIT_TIMEOUT_S) == 0
        assert not Path(f"/proc/{server}").exists(), "tini exited but left its child running"
        assert not socket_file.exists(), "the server left its socket behind"
    finally:
        for child in _children(proc.pid):
            os.kill(child, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _children(pid: int) -> list[int]:
    """Direct children of pid, from /proc (Linux)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


# ---------------------------------------------------------------------------------------- agent-tui over exec


def test_agent_tui_without_a_tty_explains_and_exits_2(container: Container) -> None:
    """`docker exec dev-agent agent-tui` (no -t): a clear message and exit 2, never a hang painting to stderr."""
    proc = subprocess.run([container.which("agent-tui")], env=container.env, cwd=container.workdir,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert NO_TTY_MESSAGE in proc.stderr


class Tmux:
    """A private tmux server (its own socket, no config), killed at the end whatever happens."""

    def __init__(self) -> None:
        self.socket = f"dev-agent-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        # Not nested in the developer's tmux; pane commands go through sh whatever the login shell is.
        self.env = {**{k: v for k, v in os.environ.items() if k != "TMUX"}, "SHELL": "/bin/sh"}

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["tmux", "-L", self.socket, "-f", "/dev/null", *args], env=self.env,
                              capture_output=True, text=True, timeout=30)

    def capture(self, *, escapes: bool = False) -> str:
        return self("capture-pane", "-p", *(["-e"] if escapes else []), "-t", "app").stdout

    def kill(self) -> None:
        self("kill-server")


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    server = Tmux()
    try:
        yield server
    finally:
        server.kill()


def _poll(condition, timeout_s: float) -> bool:
    """Poll until condition() is true; returns whether it became true (the caller asserts, with context)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


@pytest.mark.tmux
@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed: it provides the real terminal")
@pytest.mark.parametrize(
    ("terminal", "colour_sgr"),
    [
        # docker exec -it against this image: TERM=xterm-256color and COLORTERM=truecolor from the image.
        ("image", ";2;"),
        # An environment without the image's colour variables (TERM=xterm as docker exec sets it): the app
        # asks Textual for 256 colours itself instead of painting in 16.
        ("bare-xterm", ";5;"),
    ],
)
def test_agent_tui_paints_its_first_frame_and_quits_on_ctrl_q(container: Container, tmux: Tmux, terminal: str,
                                                              colour_sgr: str) -> None:
    env = dict(container.env)
    if terminal == "bare-xterm":
        env["TERM"] = "xterm"
        env.pop("COLORTERM")
    rc_file = container.root / "agent-tui.rc"
    inner = f"{shlex.quote(container.which('agent-tui'))}; echo $? > {shlex.quote(str(rc_file))}"
    command = shlex.join(["env", "-i", *(f"{k}={v}" for k, v in env.items()), "sh", "-c", inner])
    started = tmux("new-session", "-d", "-s", "app", "-x", "100", "-y", "30", "-c", str(container.workdir), command)
    assert started.returncode == 0, started.stderr

    # The first frame as the app paints it today: the footer with the quit key and the plan pane. (The transcript
    # and the input appear only once `core.engine` is imported, which runs on the event loop after this frame.)
    painted = _poll(lambda: "^q" in (s := tmux.capture()) and "Plan" in s, FRAME_TIMEOUT_S)
    screen = tmux.capture()
    assert painted, f"agent-tui painted no first frame within {FRAME_TIMEOUT_S} s:\n{screen}"
    assert "Traceback" not in screen
    sgr = tmux.capture(escapes=True)
    assert f"38{colour_sgr}" in sgr or f"48{colour_sgr}" in sgr, "not painted in the expected colour system"
    if colour_sgr == ";5;":
        assert "38;2;" not in sgr and "48;2;" not in sgr

    tmux("send-keys", "-t", "app", "C-q")
    exited = _poll(rc_file.exists, EXIT_TIMEOUT_S)
    assert exited, f"agent-tui did not exit on ctrl+q:\n{tmux.capture()}"
    assert _poll(lambda: rc_file.read_text().strip() != "", 5)
    assert rc_file.read_text().strip() == "0"
