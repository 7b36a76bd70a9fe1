"""Warm start: a server that has already imported the app and the SDK forks a ready process for each `agent-tui`.

A cold `agent-tui` spends ~0.4 s importing Textual before its first frame and seconds more importing the
openai-agents SDK before the engine connects. Like `emacs --daemon` with `emacsclient -t`, or Android's zygote,
`agent-tui --warm-server` pays those imports once (the container starts it as its main process); each
`agent-tui` then connects to its socket, hands over its terminal (the three standard descriptors, passed with
SCM_RIGHTS), its arguments, environment and working directory, and the server forks a child that runs the app on
that terminal. The client stays in the terminal's foreground: it forwards signals (window size, hang-up,
termination) to the child and exits with the child's exit code.

Anything unusual falls back to the ordinary cold start, silently: no server, a server of another user, a server
whose code or Textual settings differ from the client's (it then restarts itself with the new code), a refused
or broken connection.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import socket
import stat
import sys
import termios
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

from core.warmstart import (
    CONNECT_TIMEOUT_S,
    MAX_MESSAGE,
    code_stamp,
    connect,
    peer_uid,
    receive_message,
    send_message,
    socket_path,
)

WARM_ENV = "AGENT_TUI_WARM"
OFF_VALUES = frozenset({"0", "off", "false", "no"})
# Environment variables Textual reads when it is imported (textual.constants): a server imported Textual with
# its own values, so a client whose values differ starts cold rather than get the server's.
IMPORT_TIME_PREFIXES = ("TEXTUAL",)
IMPORT_TIME_NAMES = frozenset({"ESCDELAY"})
FORWARDED_SIGNALS = (signal.SIGWINCH, signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGCONT)
# What a warm child would otherwise import on the way to its first frame and its engine (measured: the modules
# a child imported that its server had not).
PRELOAD = ("tui.app", "tui.screens.main_screen", "tui.screens.session_picker", "tui.screens.approval_screen",
           "core.config", "core.session_log", "core.engine", "core.watch", "rich.markdown", "rich.syntax",
           "textual.drivers.linux_driver", "textual.layouts.horizontal", "textual.layouts.stream",
           "textual.scrollbar", "textual.pilot", "concurrent.futures.thread", "ctypes")
# The HTTP stack under the openai client, imported when the engine opens its first connection, and GitPython,
# imported by the first checkpoint. Their names follow the installed versions: a module that is not there is not
# needed.
OPTIONAL_PRELOAD = ("anyio._backends._asyncio", "anyio.streams.tls", "anyio.streams.stapled", "h11",
                    "httpcore", "httpcore2", "truststore", "git")
# Left on a terminal a killed child could not restore: alternate screen, mouse reporting, hidden cursor, the
# kitty keyboard protocol, bracketed paste, focus events.
TERMINAL_RESET = "\x1b[<u\x1b[?1000l\x1b[?1003l\x1b[?1015l\x1b[?1006l\x1b[?2004l\x1b[?1004l\x1b[?25h\x1b[?1049l"


class WarmStartRefused(Exception):
    """The server will not start this client (the client then starts cold)."""


def import_time_env(env: Mapping[str, str]) -> dict[str, str]:
    return {key: value for key, value in env.items()
            if key.startswith(IMPORT_TIME_PREFIXES) or key in IMPORT_TIME_NAMES}


# --------------------------------------------------------------------------- client


def run_client(argv: Sequence[str], env: Mapping[str, str]) -> int | None:
    """Run the app in a child of the warm server and return its exit code; None: start cold instead.

    `env` is the environment as agent-tui adjusted it before it would import Textual.
    """
    if env.get(WARM_ENV, "").strip().lower() in OFF_VALUES:
        return None
    try:
        cwd = os.getcwd()
    except OSError:
        return None
    sock = connect(socket_path(env))
    if sock is None:
        return None
    with sock:
        umask = os.umask(0o022)
        os.umask(umask)
        request = {"argv": list(argv), "env": dict(env), "cwd": cwd, "umask": umask, "stamp": code_stamp(),
                   "import_env": import_time_env(env)}
        try:
            socket.send_fds(sock, [json.dumps(request).encode()], [0, 1, 2])
            reply = receive_message(sock)
        except (OSError, ValueError):
            return None
        if "pid" not in reply:
            return None
        # From here the terminal is the app's: whatever happens, never start a second app cold.
        return _wait_for_child(sock, int(reply["pid"]))


def _wait_for_child(sock: socket.socket, pid: int) -> int:
    """Forward signals to the child until it reports its exit code (or its end closes the connection)."""
    try:
        saved = termios.tcgetattr(0)
    except termios.error:
        saved = None

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, forward)
    sock.settimeout(None)
    while True:
        try:
            message = receive_message(sock)
        except (OSError, ValueError):
            break
        if not message:
            break
        if "exit" in message:
            return int(message["exit"])
    # The child died without a word (SIGKILL, a crash): give the terminal back in a usable state.
    if saved is not None:
        with contextlib.suppress(termios.error, OSError):
            termios.tcsetattr(0, termios.TCSANOW, saved)
            os.write(1, TERMINAL_RESET.encode())
    print(f"agent-tui: the app (process {pid}) ended without an exit code; its session is intact: "
          "agent-tui --continue reopens it", file=sys.stderr)
    return 1


# --------------------------------------------------------------------------- server


class WarmServer:
    """Listens on a Unix socket and forks the app for each client; never runs the app itself."""

    def __init__(self, path: str, run_app: Callable[[Sequence[str]], int], *,
                 expected_env: dict[str, str], log: TextIO) -> None:
        self.path = path
        self.run_app = run_app
        self.expected_env = expected_env
        self.log = log
        self.stamp = code_stamp()
        self.listener: socket.socket | None = None

    def bind(self) -> None:
        folder = os.path.dirname(self.path) or "."
        os.makedirs(folder, mode=0o700, exist_ok=True)
        info = os.stat(folder)
        if info.st_uid != os.getuid() or info.st_mode & 0o022:
            raise OSError(f"{folder} is writable by others or not ours: refusing to put the socket there")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._remove_stale()
        old_umask = os.umask(0o177)
        try:
            listener.bind(self.path)
        finally:
            os.umask(old_umask)
        listener.listen(16)
        self.listener = listener

    def _remove_stale(self) -> None:
        """A socket left by a server that died; a live server keeps its socket (two servers would take turns)."""
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISSOCK(os.stat(self.path).st_mode):
                raise OSError(f"{self.path} exists and is not a socket")
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                probe.connect(self.path)
            except ConnectionRefusedError:
                os.unlink(self.path)
            else:
                raise OSError(f"another warm server already listens on {self.path}")
            finally:
                probe.close()

    def serve_forever(self) -> None:
        assert self.listener is not None
        # The kernel reaps finished children; each child restores the default for its own subprocesses.
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)
        # Preloaded objects are never collected: keep the collector off their pages so children share them.
        gc.freeze()
        while True:
            conn, _ = self.listener.accept()
            try:
                self.handle(conn)
            except WarmStartRefused as refused:
                with contextlib.suppress(OSError):
                    send_message(conn, {"refused": str(refused)})
                print(f"agent-tui warm server: client refused: {refused}", file=self.log, flush=True)
                if refused.args and refused.args[0] == STALE:
                    self.restart()
            except (OSError, ValueError) as exc:
                print(f"agent-tui warm server: a client failed: {exc}", file=self.log, flush=True)
            finally:
                conn.close()

    def handle(self, conn: socket.socket) -> None:
        if peer_uid(conn) != os.getuid():
            raise WarmStartRefused("the client runs as another user")
        conn.settimeout(CONNECT_TIMEOUT_S)
        data, fds, _flags, _addr = socket.recv_fds(conn, MAX_MESSAGE, 3)
        try:
            request = json.loads(data)
            if not isinstance(request, dict):
                raise WarmStartRefused("the request is not a JSON object")
            if request.get("ping"):  # `agent doctor` asks whether we run, and which code
                send_message(conn, {"server": os.getpid(), "stamp": self.stamp})
                return
            if request.get("stamp") != self.stamp:
                raise WarmStartRefused(STALE)
            if request.get("import_env") != self.expected_env:
                raise WarmStartRefused("the client's Textual settings differ from the server's")
            if len(fds) != 3 or not (os.isatty(fds[0]) and os.isatty(fds[1])):
                raise WarmStartRefused("the client did not pass its terminal")
            pid = os.fork()
            if pid == 0:
                self._child(conn, request, fds)
            print(f"agent-tui warm server: started process {pid} in {request['cwd']}", file=self.log, flush=True)
        finally:
            for fd in fds:
                os.close(fd)

    def _child(self, conn: socket.socket, request: dict[str, Any], fds: list[int]) -> None:
        """Become the client's app: its terminal, directory, umask, environment and arguments. Never returns."""
        code = 1
        try:
            assert self.listener is not None
            self.listener.close()
            for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
                signal.signal(signum, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            os.setsid()  # not in the server's process group: stopping the server leaves running apps alone
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
            os.chdir(request["cwd"])
            os.umask(int(request.get("umask", 0o022)))
            os.environ.clear()
            os.environ.update(request["env"])
            _reopen_stdio()
            conn.settimeout(None)
            send_message(conn, {"pid": os.getpid()})
            code = self.run_app(request["argv"])
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        except BaseException:  # the child's last word goes to its own terminal
            import traceback

            traceback.print_exc()
        finally:
            with contextlib.suppress(BaseException):
                sys.stdout.flush()
                sys.stderr.flush()
                send_message(conn, {"exit": code})
            os._exit(code)

    def restart(self) -> None:
        """The code changed under the server: start again as a new image of the same process."""
        print("agent-tui warm server: the code changed; restarting", file=self.log, flush=True)
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        os.execv(sys.executable, sys.orig_argv)


STALE = "the server runs older code than the client"


def _reopen_stdio() -> None:
    """Standard streams on the descriptors just received (the server's own may have been a pipe or /dev/null)."""
    sys.stdin = sys.__stdin__ = open(0, encoding="utf-8", errors="surrogateescape", closefd=False)  # noqa: SIM115
    sys.stdout = sys.__stdout__ = open(1, "w", encoding="utf-8", errors="surrogateescape",  # noqa: SIM115
                                       buffering=1, closefd=False)
    sys.stderr = sys.__stderr__ = open(2, "w", encoding="utf-8", errors="backslashreplace",  # noqa: SIM115
                                       buffering=1, closefd=False)


def serve(run_app: Callable[[Sequence[str]], int]) -> int:
    """`agent-tui --warm-server`: preload, listen, fork per client. Stays up even if it cannot serve.

    The container runs it as its main process: if it could not listen, it says why and idles, so that the
    container lives on and every `agent-tui` simply starts cold. The environment is already as agent-tui
    adjusts it before importing Textual.
    """
    import importlib

    from rich.cells import cell_len

    started = time.perf_counter()
    path = socket_path(os.environ)
    log = sys.stderr
    try:
        for module in PRELOAD:
            importlib.import_module(module)
        for module in OPTIONAL_PRELOAD:
            with contextlib.suppress(ImportError):
                importlib.import_module(module)
        cell_len("✓é")  # loads Rich's table of character widths
        from core.model import build_stream_types

        build_stream_types()  # each app's first run would build them (in a thread, but it waits for them)
        server = WarmServer(path, run_app, expected_env=import_time_env(os.environ), log=log)
        server.bind()
    except Exception as exc:  # whatever it is, the container must stay up
        print(f"agent-tui warm server: cannot serve ({exc}); agent-tui will start cold", file=log, flush=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        while True:
            signal.pause()

    def stop(_signum: int, _frame: object) -> None:
        with contextlib.suppress(OSError):
            os.unlink(path)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"agent-tui warm server: ready on {path} after {time.perf_counter() - started:.1f} s (pid {os.getpid()})",
          file=log, flush=True)
    server.serve_forever()
    return 0
