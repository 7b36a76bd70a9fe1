"""Run one approved command in its own process group, under rlimits, with a capped head + tail of its output."""

from __future__ import annotations

import asyncio
import codecs
import os
import re
import resource
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from core.errors import WorkspaceError
from core.policy_types import CommandLimits

# After SIGTERM the group gets this long to clean up before SIGKILL.
KILL_GRACE_S = 2.0
# After the group is gone, a process that escaped it (setsid) may still hold the pipe open.
DRAIN_S = 2.0
# Between the CPU soft limit (SIGXCPU) and the hard limit (SIGKILL).
CPU_HARD_MARGIN_S = 5
READ_CHUNK = 64 * 1024

_SECRET_ENV = re.compile(r".*_(KEY|TOKEN|SECRET|PASSWORD)\Z", re.IGNORECASE)
NON_INTERACTIVE_ENV = {"GIT_TERMINAL_PROMPT": "0", "PAGER": "cat", "GIT_PAGER": "cat", "TERM": "dumb"}


@dataclass
class CommandResult:
    """One finished command. ``duration_s`` runs until the exit, or until the timeout fired."""

    argv: list[str]
    cwd: str
    exit_code: int | None
    signal: int | None
    duration_s: float
    output: str  # the whole output, or head + omission marker + tail when capped
    output_chars: int  # every character the command printed
    truncated: bool
    timed_out: bool
    # run_process re-raises a cancellation; the caller sets this to report a cancelled call in the same format.
    cancelled: bool = False


def omission_marker(omitted: int, head: int, tail: int) -> str:
    return f"[... {omitted:,} characters omitted: showing the first {head:,} and the last {tail:,} ...]"


def clip_middle(text: str, limit: int) -> str:
    """Keep the first and last halves of ``limit`` characters, with a marker saying what was cut."""
    if len(text) <= limit:
        return text
    head = limit // 2
    tail = limit - head
    return f"{text[:head]}\n{omission_marker(len(text) - limit, head, tail)}\n{text[len(text) - tail:]}"


class _OutputCapture(asyncio.SubprocessProtocol):
    """Receives the merged stdout/stderr; memory stays bounded however much the command prints."""

    def __init__(self, limit: int) -> None:
        loop = asyncio.get_running_loop()
        self.exited: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._head_limit = max(limit, 0) // 2
        self._tail_limit = max(limit, 0) - self._head_limit
        self._head = ""
        self._tail = ""
        self.total = 0
        self.notes: list[str] = []

    def _add(self, text: str) -> None:
        self.total += len(text)
        room = self._head_limit - len(self._head)
        if room > 0:
            self._head += text[:room]
            text = text[room:]
        self._tail += text
        # Trim only once the tail has doubled, so a flood of small chunks costs amortised O(1) each.
        if len(self._tail) > 2 * self._tail_limit + READ_CHUNK:
            self._tail = self._tail[len(self._tail) - self._tail_limit:]

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self._add(self._decoder.decode(data))

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self._add(self._decoder.decode(b"", final=True))
        if not self.closed.done():
            self.closed.set_result(None)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    @property
    def truncated(self) -> bool:
        return self.total > self._head_limit + self._tail_limit

    def text(self) -> str:
        tail = self._tail[len(self._tail) - self._tail_limit:] if self._tail_limit else ""
        body = self._head + self._tail
        if self.truncated:
            marker = omission_marker(self.total - len(self._head) - len(tail), len(self._head), len(tail))
            body = f"{self._head}\n{marker}\n{tail}"
        return "".join([body, *self.notes])


def command_env(tools_dir: Path | None = None, extra_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The child's environment: no credentials, project tools first on PATH, nothing that waits for a human."""
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY" and not _SECRET_ENV.match(k)}
    if tools_dir is not None:
        env["PATH"] = os.pathsep.join([str(tools_dir / "bin"), env.get("PATH", os.defpath)])
    env.update(NON_INTERACTIVE_ENV)
    if extra_env:
        env.update(extra_env)
    return env


def effective_timeout(limits: CommandLimits, timeout_s: float | None) -> float:
    """The requested timeout (None or 0: the policy default), never above the policy maximum."""
    if timeout_s is not None and timeout_s < 0:
        raise WorkspaceError(f"timeout_s must be a positive number of seconds (at most {limits.max_timeout_s:g})")
    return min(timeout_s or limits.default_timeout_s, limits.max_timeout_s)


def _rlimits(limits: CommandLimits) -> list[tuple[int, tuple[int, int]]]:
    """The (resource, (soft, hard)) pairs for the child, never above the hard limits it inherits."""

    def capped(res: int, soft: int, hard: int) -> tuple[int, tuple[int, int]]:
        ceiling = resource.getrlimit(res)[1]
        if ceiling != resource.RLIM_INFINITY:
            soft, hard = min(soft, ceiling), min(hard, ceiling)
        return res, (soft, hard)

    memory = limits.memory_mb * 1024 * 1024
    wanted = [
        capped(resource.RLIMIT_AS, memory, memory),
        capped(resource.RLIMIT_CPU, limits.cpu_s, limits.cpu_s + CPU_HARD_MARGIN_S),
        (resource.RLIMIT_CORE, (0, 0)),
    ]
    if limits.max_processes:
        wanted.append(capped(resource.RLIMIT_NPROC, limits.max_processes, limits.max_processes))
    return wanted


def _limit_setter(pairs: list[tuple[int, tuple[int, int]]]) -> Callable[[], None]:
    # Runs in the forked child before exec: computed in the parent so the child does as little as possible.
    def apply() -> None:
        for res, values in pairs:
            resource.setrlimit(res, values)

    return apply


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass  # the whole group is already gone


async def _wait(fut: asyncio.Future[None], timeout: float) -> bool:
    """Wait for ``fut`` without cancelling it; True when it completed in time."""
    try:
        await asyncio.wait_for(asyncio.shield(fut), timeout)
    except TimeoutError:
        return False
    return True


def _spawn_failure(argv: list[str], cwd: Path, exc: OSError) -> CommandResult:
    name = argv[0]
    if isinstance(exc, FileNotFoundError):
        code = 127
        where = "no such file, or its #! interpreter is missing" if "/" in name else "not on PATH"
        text = f"command not found: {name!r} ({where})"
    else:
        code = 126
        text = f"cannot execute {name!r}: {exc.strerror or exc}"
    return CommandResult(argv=argv, cwd=str(cwd), exit_code=code, signal=None, duration_s=0.0, output=text,
                         output_chars=len(text), truncated=False, timed_out=False)


async def run_process(argv: Sequence[str], *, cwd: Path, limits: CommandLimits, timeout_s: float | None = None,
                      tools_dir: Path | None = None, extra_env: Mapping[str, str] | None = None) -> CommandResult:
    """Run argv (no shell) in a new session; the whole process group is killed on timeout, exit or cancel."""
    args = [str(a) for a in argv]
    if not args or not args[0]:
        raise WorkspaceError("empty command: give the program to run followed by its arguments")
    if any("\0" in a for a in args):
        raise WorkspaceError("a command argument contains a NUL byte; remove it")
    if not cwd.is_dir():
        raise WorkspaceError(f"working directory {cwd} is not a directory; run the command from the workspace "
                             "root or an existing subdirectory")
    timeout = effective_timeout(limits, timeout_s)
    loop = asyncio.get_running_loop()
    try:
        transport, capture = await loop.subprocess_exec(
            lambda: _OutputCapture(limits.output_chars), *args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, cwd=cwd, env=command_env(tools_dir, extra_env), start_new_session=True,
            preexec_fn=_limit_setter(_rlimits(limits)))
    except OSError as exc:
        return _spawn_failure(args, cwd, exc)
    started = time.monotonic()
    pgid = transport.get_pid()  # start_new_session: the child leads its own group
    timed_out = False
    try:
        # Wait for the exit itself, not for EOF: a background child may hold the pipe open.
        if not await _wait(capture.exited, timeout):
            timed_out = True
            _signal_group(pgid, signal.SIGTERM)
            await _wait(capture.exited, KILL_GRACE_S)
        duration = time.monotonic() - started
        # Also after a normal exit: background children must not outlive the call.
        _signal_group(pgid, signal.SIGKILL)
        await capture.exited
        if not await _wait(capture.closed, DRAIN_S):
            capture.notes.append("\n[stopped reading: a process that left the process group still holds the "
                                 "output open]")
    except asyncio.CancelledError:
        _signal_group(pgid, signal.SIGKILL)
        await _wait(capture.exited, KILL_GRACE_S)
        raise
    finally:
        transport.close()
    code = transport.get_returncode()
    killed_by = -code if code is not None and code < 0 else None
    return CommandResult(
        argv=args, cwd=str(cwd), exit_code=None if killed_by else code, signal=killed_by,
        duration_s=timeout if timed_out else duration, output=capture.text(), output_chars=capture.total,
        truncated=capture.truncated, timed_out=timed_out)


def _seconds(value: float) -> str:
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"


def _signal_name(number: int) -> str:
    try:
        return f"{number} ({signal.Signals(number).name})"
    except ValueError:
        return str(number)


def format_command_result(result: CommandResult) -> str:
    """What the model reads: how the command ended, then its output (head and tail when capped)."""
    if result.cancelled:
        status = f"cancelled after {_seconds(result.duration_s)} s; the process group was killed"
    elif result.timed_out:
        status = f"timed out after {_seconds(result.duration_s)} s; the process group was killed"
    elif result.signal is not None:
        status = f"killed by signal {_signal_name(result.signal)} after {_seconds(result.duration_s)} s"
        if result.signal == signal.SIGXCPU:
            status += " (CPU time limit reached)"
    else:
        status = f"exit code {result.exit_code} in {_seconds(result.duration_s)} s"
    output = result.output.rstrip("\n")
    return f"{status}\n{output}" if output else f"{status}\n(no output)"
