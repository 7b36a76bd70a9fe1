"""Shared benchmark plumbing: figures, statistics, /proc readings, the tmux harness and the scripted server process."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
TMUX = "/usr/bin/tmux"
CLK_TCK = os.sysconf("SC_CLK_TCK")
# capture-pane is polled this often: fine enough for 50 ms targets, coarse enough not to steal a core.
POLL_S = 0.01


@dataclass
class Figure:
    """One measured quantity: the median of its runs, with the load it was measured under and its target."""

    name: str
    unit: str
    values: list[float]
    loads: list[float]
    target: float | None = None
    higher_is_better: bool = False
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def verdict(self) -> str:
        if self.target is None or not self.values:
            return "-"
        ok = self.median >= self.target if self.higher_is_better else self.median <= self.target
        return "pass" if ok else "MISS"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(median=self.median, runs=len(self.values), verdict=self.verdict)
        return data


def ensure_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def load_average() -> float:
    """The 1-minute load average: two shared cores make every wall time depend on it."""
    return os.getloadavg()[0]


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); enough for a few hundred samples."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def rss_mb(pid: int | str = "self") -> float:
    """Resident set size from /proc (psutil is not installed)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def wait_until(check: Callable[[], Any], timeout_s: float, what: str, interval_s: float = POLL_S) -> Any:
    """Poll `check` until it returns something truthy; that value, or TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


def agent_env(base_url: str, workspace: Path, state_dir: Path) -> dict[str, str]:
    """The environment an agent process gets: the scripted endpoint and the benchmark's own directories."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT_", "OPENAI_")) and k != "TMUX"}
    env.update({
        "OPENAI_BASE_URL": base_url,
        "OPENAI_API_KEY": "bench-key",
        "AGENT_WORKSPACE": str(workspace),
        "AGENT_STATE_DIR": str(state_dir),
        "AGENT_TOOLS_DIR": str(state_dir / "tools"),
        "PYTHONPATH": str(REPO),
        "TERM": "xterm-256color",
        "AGENT_TUI_WARM": "off",  # cold unless a benchmark starts its own warm server
    })
    return env


class ModelServerProcess:
    """The scripted OpenAI-compatible server as its own process, so it never competes for the client's GIL."""

    def __init__(self, script: list[dict[str, Any]], directory: Path) -> None:
        self.script_path = directory / f"script-{time.monotonic_ns()}.json"
        self.script_path.write_text(json.dumps(script))
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> ModelServerProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.model_server", "--port", "0", "--script", str(self.script_path),
             "--print-url"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http"):
            self.__exit__()
            raise RuntimeError("the scripted model server did not print its URL")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


class Tmux:
    """A private tmux server (its own socket) whose panes run real agent-tui processes."""

    def __init__(self) -> None:
        self.socket = f"bench-{os.getpid()}"
        self._count = 0

    def run(self, *args: str) -> str:
        return subprocess.run([TMUX, "-L", self.socket, *args], check=True, capture_output=True,
                              text=True).stdout

    def start_server(self) -> None:
        # A keeper session holds the server up, so spawning a measured pane never pays for starting tmux.
        self.run("new-session", "-d", "-s", "keeper", "-x", "80", "-y", "24", "sleep 86400")

    def kill_server(self) -> None:
        subprocess.run([TMUX, "-L", self.socket, "kill-server"], capture_output=True)
        # kill-server leaves the socket file behind: remove ours so runs do not pile them up in /tmp.
        directory = Path(os.environ.get("TMUX_TMPDIR", "/tmp")) / f"tmux-{os.getuid()}"
        (directory / self.socket).unlink(missing_ok=True)

    def spawn(self, argv: Sequence[str], env: dict[str, str], size: tuple[int, int]) -> tuple[str, float]:
        """A new detached session running argv; its name and the perf_counter time just before the spawn."""
        self._count += 1
        name = f"s{self._count}"
        pairs = [f"{k}={v}" for k, v in env.items()]
        command = " ".join(_quote(a) for a in ["exec", "env", "-i", *pairs, *argv])
        started = time.perf_counter()
        self.run("new-session", "-d", "-s", name, "-x", str(size[0]), "-y", str(size[1]), command)
        return name, started

    def capture(self, name: str) -> str:
        return self.run("capture-pane", "-p", "-t", name)

    def pid(self, name: str) -> int:
        return int(self.run("list-panes", "-t", name, "-F", "#{pane_pid}").split()[0])

    def send_text(self, name: str, text: str) -> None:
        self.run("send-keys", "-t", name, "-l", text)

    def send_key(self, name: str, key: str) -> None:
        self.run("send-keys", "-t", name, key)

    def kill_session(self, name: str) -> None:
        subprocess.run([TMUX, "-L", self.socket, "kill-session", "-t", name], capture_output=True)


def _quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\\''") + "'"


@contextmanager
def tmux_server() -> Iterator[Tmux]:
    tmux = Tmux()
    tmux.start_server()
    try:
        yield tmux
    finally:
        tmux.kill_server()


def stop_tui(tmux: Tmux, name: str, pid: int) -> None:
    """Quit with ctrl+q (the engine closes its session), then make sure the pane and process are gone."""
    try:
        tmux.send_key(name, "C-q")
        wait_until(lambda: not Path(f"/proc/{pid}").exists(), 5, "agent-tui to quit")
    except (TimeoutError, subprocess.CalledProcessError):
        pass
    tmux.kill_session(name)
    # A pane closed under agent-tui does not end it (SIGHUP is taken for policy reloads): never leave one behind.
    if Path(f"/proc/{pid}").exists():
        os.kill(pid, signal.SIGKILL)


APP_MARKERS = ("Transcript", "Message", "Quit", "Plan")


def shows_app(screen: str) -> bool:
    """The first frame: the screen holds the app's own words (tmux shows blanks until it paints)."""
    return any(marker in screen for marker in APP_MARKERS)


def input_box(screen: str) -> str:
    """The text inside the Message box (between its top border titled Message and its bottom border)."""
    lines = screen.splitlines()
    for index, line in enumerate(lines):
        if "Message" in line and "╭" in line:
            inside: list[str] = []
            for row in lines[index + 1:]:
                if "╰" in row:
                    break
                inside.append(row.strip().strip("│").strip())
            return "\n".join(inside)
    return ""


MODEL_ID = "scripted-model"


def connected(screen: str) -> bool:
    """The engine started: the session's first event put the endpoint's model id in the status bar."""
    return MODEL_ID in screen and "connecting" not in screen


def pss_mb(pid: int) -> float:
    """Proportional set size: pages shared with other processes (a warm app and its server) count by share."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no Pss for process {pid}")


def children(pid: int) -> list[int]:
    """The direct children of a process (every thread's), from /proc."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found
