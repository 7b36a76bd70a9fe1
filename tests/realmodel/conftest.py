"""Real-model tier: the `agent` CLI against llama-server running Qwen2.5-Coder-1.5B-Instruct Q4_K_M on CPU.

Opt-in and slow (minutes). Set up once (about 7 minutes on 2 cores, cached outside the repo), then run:

    bash tests/realmodel/setup.sh
    .venv/bin/python -m pytest tests/realmodel -m realmodel -q -p no:cacheprovider

The cache lives in $DEV_AGENT_REALMODEL_CACHE (default ~/.cache/dev-agent-realmodel). When it is not set up,
every test here is skipped with a message pointing at setup.sh.

The `llama_server` fixture is session-scoped and parametrized over two chat templates:
  * "fixed": --chat-template-file qwen25-jsonfence-v2.jinja; llama-server parses the model's ```json fences
    into real `tool_calls` (docs: /work/shared/research/local-llm.md section 3.3);
  * "stock": the GGUF's own Hermes template; the model prints tool calls as ```json text and only the
    engine's text-tool-call recovery (core/textcalls.py) makes them work.
pytest groups the tests by template, so each server starts once. A summary table (wall time and model turns
per task and template) is printed at the end and appended to $DEV_AGENT_REALMODEL_RESULTS when that is set.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("DEV_AGENT_REALMODEL_CACHE") or Path.home() / ".cache" / "dev-agent-realmodel")
# DEV_AGENT_REALMODEL_SERVER_BIN: another llama-server binary (e.g. a prebuilt one) instead of the cached build.
SERVER_BIN = Path(os.environ.get("DEV_AGENT_REALMODEL_SERVER_BIN") or CACHE / "bin" / "llama-server")
MODEL_FILE = CACHE / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
TEMPLATE_FILE = CACHE / "qwen25-jsonfence-v2.jinja"
MODEL_ID = "qwen2.5-coder-1.5b-instruct"
CONTEXT = 8192
TEMPLATES = ("fixed", "stock")
HEALTH_TIMEOUT_S = 180.0
# One agent run on this CPU: a few turns of ~1.5k-token prefill at ~75 tok/s plus generation.
RUN_TIMEOUT_S = float(os.environ.get("DEV_AGENT_REALMODEL_RUN_TIMEOUT", "900"))

RESULTS: list[dict[str, Any]] = []


def missing_setup() -> str | None:
    missing = [p.name for p in (SERVER_BIN, MODEL_FILE, TEMPLATE_FILE) if not p.is_file()]
    if missing:
        return (f"real-model cache {CACHE} is not set up (missing: {', '.join(missing)}); "
                "run `bash tests/realmodel/setup.sh` first (about 7 min on 2 idle cores)")
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


@dataclass
class LlamaServer:
    template: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    started_s: float

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def server_command(template: str, port: int) -> list[str]:
    threads = os.environ.get("DEV_AGENT_REALMODEL_THREADS", "1")  # -t 1: the test runner shares the 2 cores
    cmd = [str(SERVER_BIN), "-m", str(MODEL_FILE), "--host", "127.0.0.1", "--port", str(port),
           "-c", str(CONTEXT), "-t", threads, "-np", "1", "-a", MODEL_ID, "--jinja", "--no-webui"]
    if template == "fixed":
        cmd += ["--chat-template-file", str(TEMPLATE_FILE)]
    return cmd


@pytest.fixture(scope="session", params=TEMPLATES)
def llama_server(request: pytest.FixtureRequest) -> Iterator[LlamaServer]:
    problem = missing_setup()
    if problem:
        pytest.skip(problem)
    template = str(request.param)
    port = free_port()
    # In the cache, not in pytest's tmp dirs (pytest keeps only the last 3, and other runs rotate them out).
    log_dir = CACHE / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"llama-server-{template}.log"
    started = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(server_command(template, port), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    server = LlamaServer(template=template, port=port, proc=proc, log_path=log_path, started_s=0.0)
    try:
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama-server exited with {proc.returncode} during start:\n{server.log_tail()}")
            try:
                status, _ = http_get(f"http://127.0.0.1:{port}/health", timeout=2)
            except (OSError, urllib.error.URLError):
                status = 0
            if status == 200:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"llama-server not healthy after {HEALTH_TIMEOUT_S:.0f} s:\n{server.log_tail()}")
            time.sleep(0.25)
        server.started_s = time.monotonic() - started
        yield server
    finally:
        stop_process(proc)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Stop the server we started, by its PID only."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=15)


# --------------------------------------------------------------------------- running the real `agent`


@dataclass
class AgentRun:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def session_id(self) -> str | None:
        return next((e.get("session_id") for e in self.events if e.get("type") == "session_started"), None)

    @property
    def model_turns(self) -> int:
        """Model requests in this process: one `usage` event per completed model response."""
        return sum(1 for e in self.events if e.get("type") == "usage")

    @property
    def tool_calls(self) -> list[tuple[str, str, str]]:
        finished = {e["call_id"]: e.get("status", "") for e in self.events if e.get("type") == "tool_call_finished"}
        return [(e["tool"], e.get("arguments", ""), finished.get(e["call_id"], "-"))
                for e in self.events if e.get("type") == "tool_call_requested"]

    def final(self) -> dict[str, Any]:
        return next((e for e in reversed(self.events) if e.get("type") == "run_finished"), {})

    def describe(self) -> str:
        """Everything needed to diagnose a failed run from the pytest report."""
        lines = [f"$ {' '.join(self.argv)}  -> exit {self.returncode} in {self.wall_s:.1f} s, "
                 f"{self.model_turns} model turn(s)"]
        for e in self.events:
            t = e.get("type")
            if t == "tool_call_requested":
                lines.append(f"  call {e['tool']} {e.get('arguments', '')[:300]} [{e.get('decision')}]")
            elif t == "tool_call_finished":
                lines.append(f"  -> {e.get('status')} {e.get('output_preview', '')[:200]!r}")
            elif t == "assistant_message":
                lines.append(f"  {e.get('role')}: {e.get('text', '')[:400]!r}")
            elif t in ("error", "notice"):
                lines.append(f"  {t}: {e.get('message')} {e.get('hint', '')}")
            elif t == "usage":
                lines.append(f"  usage: context {e.get('context_used')}/{e.get('context_limit')}, "
                             f"total in {e.get('input_tokens')} out {e.get('output_tokens')}")
            elif t == "run_finished":
                lines.append(f"  run_finished {e.get('status')}: {e.get('summary', '')[:200]!r}")
        if self.stderr.strip():
            lines.append("stderr: " + self.stderr.strip()[-1500:])
        return "\n".join(lines)


def agent_bin() -> str:
    return str(Path(sys.executable).with_name("agent"))


@pytest.fixture
def realmodel_env(llama_server: LlamaServer, tmp_path: Path,
                  tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    # The system prompt names the workspace, and it comes before the ~1.4k tokens of tool schemas: one
    # workspace path per server keeps llama-server's prompt cache warm from test to test (prefill is the
    # slow part on CPU). It is emptied for every test.
    # Its last component is the plain word "workspace": with ".../workspace-stock" the model once wrote
    # "stock/greet.py" (the prompt names the absolute path; docs/REALMODEL.md problem 5).
    workspace = tmp_path_factory.getbasetemp() / f"realmodel-{llama_server.template}" / "workspace"
    shutil.rmtree(workspace, ignore_errors=True)
    workspace.mkdir(parents=True)
    state = tmp_path / "state"
    state.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT_", "OPENAI_"))}
    env.update({
        "OPENAI_BASE_URL": llama_server.base_url,
        "OPENAI_API_KEY": "realmodel",
        "AGENT_MODEL": MODEL_ID,
        "AGENT_WORKSPACE": str(workspace),
        "AGENT_STATE_DIR": str(state),
        "AGENT_TOOLS_DIR": str(state / "tools"),
        "AGENT_TEMPERATURE": "0",
        "AGENT_MAX_TOKENS": os.environ.get("DEV_AGENT_REALMODEL_MAX_TOKENS", "768"),
        "AGENT_MAX_TURNS": "10",
        "AGENT_REVIEW_ROUNDS": "0",
        "PYTHONPATH": str(REPO),
        "OPENAI_AGENTS_DISABLE_TRACING": "1",
    })
    return env


def run_agent(args: list[str], env: dict[str, str], *, timeout: float = RUN_TIMEOUT_S) -> AgentRun:
    argv = [agent_bin(), *args]
    started = time.monotonic()
    proc = subprocess.run(argv, env=env, cwd=env["AGENT_WORKSPACE"], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    wall = time.monotonic() - started
    events = []
    for line in proc.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return AgentRun(argv=argv, returncode=proc.returncode, stdout=proc.stdout, stderr=proc.stderr, wall_s=wall,
                    events=events)


def record(task: str, template: str, ok: bool, runs: list[AgentRun], note: str = "") -> None:
    row = {"task": task, "template": template, "ok": ok, "wall_s": round(sum(r.wall_s for r in runs), 1),
           "turns": sum(r.model_turns for r in runs), "processes": len(runs), "note": note}
    RESULTS.append(row)
    target = os.environ.get("DEV_AGENT_REALMODEL_RESULTS")
    if target:
        with open(target, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    tr = terminalreporter
    tr.section("real-model runs")
    tr.write_line(f"{'task':<28} {'template':<8} {'ok':<4} {'wall s':>7} {'turns':>5}  note")
    for r in RESULTS:
        tr.write_line(f"{r['task']:<28} {r['template']:<8} {'yes' if r['ok'] else 'NO':<4} {r['wall_s']:>7.1f} "
                      f"{r['turns']:>5}  {r['note']}")


def python_output(workspace: Path, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([shutil.which("python3") or sys.executable, script], cwd=workspace, capture_output=True,
                          text=True, timeout=30)
