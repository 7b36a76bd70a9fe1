"""The warm server's socket and refusals, without a terminal: every doubt means the client starts cold."""

from __future__ import annotations

import json
import os
import pty
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from core import warmstart
from core.warmstart import code_stamp, ping, socket_path
from tui.warm import STALE, WarmServer, WarmStartRefused, import_time_env, run_client


def never_run(argv: object) -> int:
    raise AssertionError("the app must not start")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[WarmServer]:
    folder = tmp_path / "run"
    server = WarmServer(str(folder / "agent-tui.sock"), never_run, expected_env={"ESCDELAY": "25"},
                        log=open(os.devnull, "w"))  # noqa: SIM115
    yield server
    if server.listener is not None:
        server.listener.close()
    server.log.close()


def test_the_socket_lives_in_the_runtime_folder_unless_told(tmp_path: Path) -> None:
    assert socket_path({"AGENT_TUI_SOCKET": "/x/s.sock", "XDG_RUNTIME_DIR": str(tmp_path)}) == "/x/s.sock"
    assert socket_path({"XDG_RUNTIME_DIR": str(tmp_path)}) == str(tmp_path / "agent-tui.sock")
    missing = str(tmp_path / "gone")
    assert socket_path({"XDG_RUNTIME_DIR": missing}) == f"/tmp/dev-agent-{os.getuid()}/agent-tui.sock"


def test_only_textual_import_time_settings_must_match() -> None:
    env = {"TEXTUAL_THEME": "nord", "ESCDELAY": "25", "AGENT_MODEL": "m", "TERM": "xterm-256color"}
    assert import_time_env(env) == {"TEXTUAL_THEME": "nord", "ESCDELAY": "25"}


def test_the_code_stamp_is_stable() -> None:
    assert code_stamp() == code_stamp()


@pytest.mark.parametrize("setup", ["off", "missing", "not a socket"])
def test_the_client_starts_cold_without_a_usable_server(tmp_path: Path, setup: str) -> None:
    path = tmp_path / "agent-tui.sock"
    env = {"AGENT_TUI_SOCKET": str(path), "AGENT_TUI_WARM": "on"}
    if setup == "off":
        env["AGENT_TUI_WARM"] = "off"
    elif setup == "not a socket":
        path.write_text("")
    assert run_client([], env) is None


def test_a_dead_servers_socket_is_replaced_and_a_live_one_kept(server: WarmServer) -> None:
    os.makedirs(os.path.dirname(server.path), mode=0o700)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    dead.bind(server.path)
    dead.close()  # the file stays, nobody listens
    server.bind()
    assert server.listener is not None
    second = WarmServer(server.path, never_run, expected_env={}, log=server.log)
    with pytest.raises(OSError, match="another warm server already listens"):
        second.bind()


def test_a_folder_others_can_write_is_refused(server: WarmServer) -> None:
    folder = os.path.dirname(server.path)
    os.makedirs(folder)
    os.chmod(folder, 0o777)
    with pytest.raises(OSError, match="writable by others"):
        server.bind()


def request(stamp: str, env: dict[str, str]) -> bytes:
    return json.dumps({"argv": [], "env": {}, "cwd": "/", "stamp": stamp, "import_env": env}).encode()


@pytest.mark.parametrize(("stamp", "env", "reason"), [
    ("old", {"ESCDELAY": "25"}, STALE),
    (None, {"ESCDELAY": "100"}, "Textual settings differ"),
    (None, {"ESCDELAY": "25"}, "did not pass its terminal"),
])
def test_requests_the_server_cannot_serve_are_refused_before_any_fork(
        server: WarmServer, stamp: str | None, env: dict[str, str], reason: str) -> None:
    client, conn = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    master, slave = pty.openpty()
    # The last case passes no terminal: a pipe's two ends as standard input and output.
    fds = [slave, slave, slave] if reason != "did not pass its terminal" else [*os.pipe(), slave]
    with client, conn:
        socket.send_fds(client, [request(stamp or server.stamp, env)], fds)
        with pytest.raises(WarmStartRefused, match=reason):
            server.handle(conn)
    for fd in {master, slave, *fds}:
        os.close(fd)


def test_the_stamp_follows_the_code(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "tui").mkdir()
    module = tmp_path / "tui" / "x.py"
    module.write_text("a = 1\n")
    monkeypatch.setattr(warmstart, "__file__", str(tmp_path / "core" / "warmstart.py"))
    before = code_stamp()
    module.write_text("a = 22\n")
    assert code_stamp() != before


def test_a_ping_is_answered_with_the_servers_pid_and_code_and_starts_nothing(server: WarmServer) -> None:
    server.bind()
    assert server.listener is not None
    answers: list[dict[str, object] | None] = []
    asker = threading.Thread(target=lambda: answers.append(ping(server.path)))
    asker.start()
    conn, _ = server.listener.accept()
    with conn:
        server.handle(conn)  # never_run: the app must not start
    asker.join(10)
    assert answers == [{"server": os.getpid(), "stamp": server.stamp}]


def test_no_server_answers_no_ping(tmp_path: Path) -> None:
    assert ping(str(tmp_path / "none.sock")) is None
    (tmp_path / "file.sock").write_text("")
    assert ping(str(tmp_path / "file.sock")) is None


def test_a_request_that_is_not_an_object_is_refused_not_a_crash(server: WarmServer) -> None:
    client, conn = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with client, conn:
        client.send(b"[1, 2]")
        with pytest.raises(WarmStartRefused, match="not a JSON object"):
            server.handle(conn)
