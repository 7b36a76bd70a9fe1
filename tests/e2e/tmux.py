"""A small tmux driver: run a program in a real terminal, type at it, read its screen and its exit code."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from types import TracebackType

EXIT_MARK = "EXITED:"
POLL_S = 0.05
# How long a program gets to end by itself once its terminal is gone, before close() kills it.
HANGUP_GRACE_S = 10.0


def alive(pid: int) -> bool:
    """Whether the process still runs (a zombie has ended: only its parent has not collected it yet)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            return not any(line.startswith("State:") and "Z" in line for line in status)
    except FileNotFoundError:
        return False


class TmuxTerminal:
    """One private tmux server (its own socket, no user config) holding one window.

    The program runs as `PROGRAM; echo EXITED:$?; sleep` so that the pane stays alive after it exits and the
    exit code can be read from the screen. Waiting is polling the screen for text, never sleeping blindly.
    """

    SESSION = "main"

    def __init__(self, name: str | None = None) -> None:
        if shutil.which("tmux") is None:
            raise RuntimeError("tmux is not installed")
        self.socket = name or f"dev-agent-test-{uuid.uuid4().hex[:12]}"
        self._started = False
        self._programs: list[int] = []

    def __enter__(self) -> TmuxTerminal:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _tmux(self, *args: str, env: Mapping[str, str] | None = None, check: bool = True) -> str:
        result = subprocess.run(["tmux", "-L", self.socket, "-f", "/dev/null", *args], env=env,
                                capture_output=True, text=True, timeout=30)
        if check and result.returncode != 0:
            raise RuntimeError(f"tmux {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def start(self, cmd: Sequence[str], env: Mapping[str, str], size: tuple[int, int] = (120, 40),
              cwd: str | None = None) -> None:
        """Run `cmd` in a fresh window of `size` (columns, rows); TERM comes from `env` (tmux would set its own)."""
        if self._started:
            self._tmux("kill-session", "-t", self.SESSION, check=False)
        term = env.get("TERM", "xterm-256color")
        program = shlex.join(["env", f"TERM={term}", *cmd])
        shell_line = f"{program}; echo {EXIT_MARK}$?; sleep 600"
        width, height = size
        args = ["new-session", "-d", "-s", self.SESSION, "-x", str(width), "-y", str(height)]
        if cwd:
            args += ["-c", cwd]
        self._tmux(*args, shell_line, env={**env, "SHELL": "/bin/sh"})
        self._started = True
        self._programs.append(self.program_pid())

    def program_pid(self, timeout: float = 10.0) -> int:
        """The pid of the program (the child of the pane's shell)."""
        pane = int(self._tmux("display-message", "-p", "-t", self.SESSION, "#{pane_pid}").strip())
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(FileNotFoundError):
                with open(f"/proc/{pane}/task/{pane}/children") as children:
                    pids = children.read().split()
                if pids:
                    return int(pids[0])
            if time.monotonic() > deadline:
                raise AssertionError("the program did not start in the pane")
            time.sleep(POLL_S)

    def screen(self, *, colours: bool = False) -> str:
        """The visible screen as text (`colours=True` keeps the SGR escape codes)."""
        args = ["capture-pane", "-p", "-t", self.SESSION]
        if colours:
            args.append("-e")
        return self._tmux(*args)

    def wait_for(self, pattern: str, timeout: float = 15.0) -> re.Match[str]:
        """Poll the screen until `pattern` (a regex) shows; on timeout fail with the screen in the message."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            match = regex.search(text)
            if match:
                return match
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} did not show within {timeout:.0f} s; the screen:\n{text}")
            time.sleep(POLL_S)

    def send(self, *keys: str) -> None:
        """Key names as tmux spells them: Enter, Escape, C-q, Down, y ..."""
        self._tmux("send-keys", "-t", self.SESSION, *keys)

    def type(self, text: str) -> None:
        """Literal text, each character a key press."""
        self._tmux("send-keys", "-t", self.SESSION, "-l", text)

    def exit_code(self, timeout: float = 15.0) -> int:
        """Wait for the program to exit and return its exit code."""
        return int(self.wait_for(rf"{EXIT_MARK}(\d+)", timeout).group(1))

    def hang_up(self) -> None:
        """Kill the tmux server, as closing the terminal window does: its programs get SIGHUP."""
        self._tmux("kill-server", check=False)
        self._started = False

    def close(self) -> None:
        """Hang up, then kill (by pid) any program this terminal started that did not end by itself."""
        self.hang_up()
        programs, self._programs = self._programs, []
        deadline = time.monotonic() + HANGUP_GRACE_S
        for pid in programs:
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(POLL_S)
            if alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
