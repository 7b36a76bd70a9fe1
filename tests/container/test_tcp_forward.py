"""docker/tcp-forward.py, the offline variant's only way to the model: relays bytes both ways, on loopback here."""

from __future__ import annotations

import signal
import socket
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from tests.container.dockerfile_model import REPO

SCRIPT = REPO / "docker" / "tcp-forward.py"


class _Upper(socketserver.StreamRequestHandler):
    """Answers each line in upper case, then says goodbye when the client half-closes."""

    def handle(self) -> None:
        for line in self.rfile:
            self.wfile.write(line.upper())
        self.wfile.write(b"BYE\n")


@pytest.fixture
def upstream() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Upper)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(target_port: int) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--listen", "127.0.0.1:0",
                             "--target", f"127.0.0.1:{target_port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    banner = proc.stdout.readline()  # "tcp-forward: 127.0.0.1:PORT -> 127.0.0.1:TARGET", once it listens
    assert banner.startswith("tcp-forward: 127.0.0.1:"), banner + proc.stderr.read()
    return proc, int(banner.split()[1].rsplit(":", 1)[1])


def _stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _exchange(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=15) as conn:
        conn.sendall(payload)
        conn.shutdown(socket.SHUT_WR)
        chunks = []
        while data := conn.recv(65536):
            chunks.append(data)
    return b"".join(chunks)


def test_bytes_go_both_ways_and_half_close_is_passed_on(upstream: int) -> None:
    proc, port = _start(upstream)
    try:
        big = b"x" * 200_000 + b"\n"  # several reads and drains, as a streamed model reply would be
        assert _exchange(port, b"hello\n" + big) == b"HELLO\n" + big.upper() + b"BYE\n"
        assert _exchange(port, b"again\n") == b"AGAIN\nBYE\n", "one connection must not break the next"
    finally:
        assert _stop(proc) == 0


def test_an_unreachable_target_closes_the_client_and_says_why() -> None:
    proc, port = _start(_free_port())
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=15) as conn:
            # The forwarder may close before or after the request arrives: the client sees end-of-stream or a
            # reset, never a connection left hanging (the 15 s socket timeout would fail the test).
            try:
                conn.sendall(b"GET /v1/models HTTP/1.1\r\n\r\n")
                conn.shutdown(socket.SHUT_WR)
                assert conn.recv(65536) == b""
            except TimeoutError:
                pytest.fail("the forwarder left the client hanging")
            except OSError:
                pass  # reset or not connected: closed, as expected
    finally:
        assert _stop(proc) == 0
    assert "cannot reach 127.0.0.1:" in proc.stderr.read()


@pytest.mark.parametrize("bad", ["1234", "host:", "host:99999", ":80"])
def test_bad_addresses_are_usage_errors(bad: str) -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--listen", bad, "--target", "127.0.0.1:1"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "expected HOST:PORT" in proc.stderr
