"""Small real MCP servers for tests: one tool set, served over stdio or Streamable HTTP / SSE on 127.0.0.1.

Run as a script: `python tests/fakes/mcp_servers.py stdio` (the client spawns it), or
`python tests/fakes/mcp_servers.py streamable_http|sse` (prints `PORT <n>` once it listens on an ephemeral
port). With FAKE_MCP_TOKEN set, the HTTP transports answer 401 to requests without
`Authorization: Bearer <token>`. With FAKE_MCP_PID_FILE set, the process writes its pid there at startup,
so a test can kill a server the client spawned.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve()
TOOL_NAMES = ("echo", "add", "delete_all", "slow")


def build_server() -> Any:
    import anyio
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("fake-tools", log_level="WARNING")

    @server.tool()
    def echo(text: str) -> str:
        """Return the text unchanged."""
        return f"echo: {text}"

    @server.tool()
    def add(a: int, b: int) -> str:
        """Add two whole numbers."""
        return str(a + b)

    @server.tool()
    def delete_all() -> str:
        """Delete everything (the kind of tool an operator denies)."""
        return "deleted everything"

    @server.tool()
    async def slow(seconds: float) -> str:
        """Sleep, then answer."""
        await anyio.sleep(seconds)
        return f"slept {seconds}"

    return server


class _RequireBearer:
    """ASGI middleware: 401 unless the request carries the expected bearer token."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and dict(scope["headers"]).get(b"authorization") != self.expected:
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"missing or wrong bearer token"})
            return
        await self.app(scope, receive, send)


def _serve_http(transport: str) -> None:
    import anyio
    import uvicorn

    server = build_server()
    app: Any = server.streamable_http_app() if transport == "streamable_http" else server.sse_app()
    token = os.environ.get("FAKE_MCP_TOKEN")
    if token:
        app = _RequireBearer(app, token)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    anyio.run(lambda: uvicorn.Server(config).serve(sockets=[sock]))


def main(argv: list[str]) -> None:
    pid_file = os.environ.get("FAKE_MCP_PID_FILE")
    if pid_file:
        Path(pid_file).write_text(str(os.getpid()))
    transport = argv[0] if argv else "stdio"
    if transport == "stdio":
        build_server().run("stdio")
    else:
        _serve_http(transport)


def stdio_entry(name: str, **extra: Any) -> dict[str, Any]:
    """A settings.yaml `mcp_servers` entry that spawns this script over stdio."""
    return {"name": name, "transport": "stdio", "command": sys.executable, "args": [str(SCRIPT), "stdio"], **extra}


class HttpMcpServer:
    """This script as a subprocess serving Streamable HTTP (or SSE) on 127.0.0.1; `with` stops it."""

    def __init__(self, transport: str = "streamable_http", *, token: str | None = None) -> None:
        self.transport = transport
        self.token = token
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        path = "/mcp" if self.transport == "streamable_http" else "/sse"
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> HttpMcpServer:
        env = {k: v for k, v in os.environ.items() if k != "FAKE_MCP_TOKEN"}
        if self.token:
            env["FAKE_MCP_TOKEN"] = self.token
        self.proc = subprocess.Popen([sys.executable, str(SCRIPT), self.transport], stdout=subprocess.PIPE,
                                     text=True, env=env)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"fake MCP server did not start: {line!r}")
        self.port = int(line.split()[1])
        self._wait_listening()
        return self

    def _wait_listening(self) -> None:
        # The port is bound before uvicorn accepts; a connect succeeds once the listen backlog exists.
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"fake MCP server on port {self.port} never accepted a connection")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> HttpMcpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
