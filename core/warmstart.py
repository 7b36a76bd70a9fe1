"""Where agent-tui's warm server listens, how to tell whether it runs the installed code, and a ping to it.

The server itself is in `tui/warm.py`; this part is here so that `agent doctor` (core never imports tui) can
report it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import site
import socket
import stat
import struct
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SOCKET_ENV = "AGENT_TUI_SOCKET"
# A request holds the whole environment: far below the socket's buffer, far above any real environment.
MAX_MESSAGE = 1 << 20
CONNECT_TIMEOUT_S = 5.0
PACKAGES = ("core", "tools", "tui")


def socket_path(env: Mapping[str, str]) -> str:
    """`$AGENT_TUI_SOCKET`, else `agent-tui.sock` in `$XDG_RUNTIME_DIR` or in `/tmp/dev-agent-UID/`."""
    if env.get(SOCKET_ENV):
        return env[SOCKET_ENV]
    runtime = env.get("XDG_RUNTIME_DIR", "")
    folder = runtime if runtime and os.path.isdir(runtime) else f"/tmp/dev-agent-{os.getuid()}"
    return os.path.join(folder, "agent-tui.sock")


def code_stamp() -> str:
    """Changes when our code or the installed packages change (pip adds or removes a dist-info folder)."""
    digest = hashlib.sha1(sys.version.encode())
    root = Path(__file__).resolve().parent.parent
    for package in PACKAGES:
        for folder, _dirs, files in os.walk(root / package):
            for name in sorted(files):
                if name.endswith((".py", ".tcss")):
                    info = os.stat(os.path.join(folder, name))
                    digest.update(f"{folder}/{name}:{info.st_mtime_ns}:{info.st_size}".encode())
    for packages in site.getsitepackages():
        with contextlib.suppress(OSError):
            digest.update(f"{packages}:{os.stat(packages).st_mtime_ns}".encode())
    return digest.hexdigest()


def peer_uid(sock: socket.socket) -> int:
    _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                          struct.calcsize("3i")))
    return uid


def send_message(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.send(json.dumps(message).encode())


def receive_message(sock: socket.socket) -> dict[str, Any]:
    """The next message (SOCK_SEQPACKET keeps their bounds); an empty one when the other end closed."""
    message = json.loads(sock.recv(MAX_MESSAGE) or b"{}")
    if not isinstance(message, dict):
        raise ValueError(f"not a message: {message!r}")
    return message


def connect(path: str) -> socket.socket | None:
    """A connection to this user's warm server at `path`; None when there is none (no socket, another user's,
    nobody listening)."""
    try:
        info = os.stat(path)
        if not stat.S_ISSOCK(info.st_mode) or info.st_uid != os.getuid():
            return None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    except OSError:
        return None
    try:
        sock.settimeout(CONNECT_TIMEOUT_S)
        sock.connect(path)
        if peer_uid(sock) == os.getuid():
            return sock
    except OSError:
        pass
    sock.close()
    return None


def ping(path: str) -> dict[str, Any] | None:
    """The server's answer to a ping ({"server": pid, "stamp"}), or None when no server of this user answers."""
    sock = connect(path)
    if sock is None:
        return None
    with sock:
        try:
            send_message(sock, {"ping": True})
            reply = receive_message(sock)
        except (OSError, ValueError):
            return None
    return reply if "server" in reply else None
