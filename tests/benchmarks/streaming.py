"""Sustained streaming: a ~20,000-word answer at full speed, with keystrokes typed while it streams."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import time
from pathlib import Path
from typing import Any

from core.events import AssistantDelta, AssistantMessage, Event
from core.session_log import SessionStore
from tests.benchmarks.common import (
    VENV_BIN,
    Figure,
    ModelServerProcess,
    Tmux,
    agent_env,
    connected,
    cpu_seconds,
    input_box,
    load_average,
    percentile,
    rss_mb,
    stop_tui,
    tmux_server,
    wait_until,
)
from tests.fakes.model_server import Reply

WORDS = 20_000
# Reply.full_speed ends in the same words as every other line: one extra last word makes the end recognisable.
END_MARK = "ENDMARK"
KEY = "k"
KEY_INTERVAL_S = 0.1
BASELINE_KEYS = 10
RUN_LIMIT_S = 600.0


def _token_count() -> int:
    reply = Reply.full_speed(words=WORDS)
    return -(-(len(reply.text) + len(END_MARK) + 1) // reply.chunk_size)


TOKENS = _token_count()


def reply_script() -> list[dict[str, Any]]:
    reply = Reply.full_speed(words=WORDS)
    reply.text += f" {END_MARK}"
    return [reply.to_dict()]


# A fast local model on a GPU: 150 five-character tokens a second, for about 8 s.
PACED_WORDS = 1000
PACED_TOKENS_PER_S = 150


def paced_script() -> list[dict[str, Any]]:
    reply = Reply.full_speed(words=PACED_WORDS)
    reply.text += f" {END_MARK}"
    reply.delay_s = 1 / PACED_TOKENS_PER_S
    return [reply.to_dict()]


def stream_env(url: str, tmp: Path) -> tuple[dict[str, str], Path]:
    """A single-request run: no reviewer pass after the answer."""
    state = tmp / f"state-{time.monotonic_ns()}"
    workspace = tmp / "ws"
    state.mkdir(parents=True)
    workspace.mkdir(exist_ok=True)
    env = agent_env(url, workspace, state)
    env.update({"AGENT_REVIEW_ROUNDS": "0", "AGENT_PLANNER": "false"})
    return env, state


def event_integrity(state: Path, script: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Seq gaps and duplicates in the recorded log, and whether the deltas add up to the final answer."""
    store = SessionStore(state)
    (summary,) = store.list()
    events: list[Event] = store.open(summary.id).read_events()
    seqs = [event.seq for event in events]
    gaps = sum(1 for a, b in itertools.pairwise(seqs) if b != a + 1)
    duplicates = len(seqs) - len(set(seqs))
    deltas = "".join(e.text for e in events if isinstance(e, AssistantDelta))
    finals = [e.text for e in events if isinstance(e, AssistantMessage)]
    expected = (script or reply_script())[0]["text"]
    return {"events": len(events), "seq_gaps": gaps, "seq_duplicates": duplicates,
            "delta_events": sum(isinstance(e, AssistantDelta) for e in events),
            "deltas_match_answer": deltas == expected, "final_matches_answer": finals == [expected]}


class _KeyProbe:
    """Types KEY into the input box and times how long until the screen shows it."""

    def __init__(self, tmux: Tmux, name: str) -> None:
        self.tmux = tmux
        self.name = name
        self.shown = 0
        self.screen = ""

    def sync(self) -> None:
        self.screen = self.tmux.capture(self.name)
        self.shown = input_box(self.screen).count(KEY)

    def press(self, timeout_s: float = 10.0) -> float:
        """One keystroke -> on screen, in seconds (every capture in between is kept in `screen`)."""
        expected = self.shown + 1
        started = time.perf_counter()
        self.tmux.send_text(self.name, KEY)
        deadline = started + timeout_s
        while True:
            self.screen = self.tmux.capture(self.name)
            if input_box(self.screen).count(KEY) >= expected:
                self.shown = expected
                return time.perf_counter() - started
            if time.perf_counter() > deadline:
                raise TimeoutError("a typed key did not show in the input box")
            time.sleep(0.002)


def _one_tmux_run(tmux: Tmux, tmp: Path, script: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    script = script or reply_script()
    with ModelServerProcess(script, tmp) as server:
        env, state = stream_env(server.url, tmp)
        name, _spawned = tmux.spawn([str(VENV_BIN / "agent-tui")], env, (120, 40))
        pid = tmux.pid(name)
        try:
            wait_until(lambda: connected(tmux.capture(name)), 60, "the engine to start")
            probe = _KeyProbe(tmux, name)
            probe.sync()
            baseline = []
            for _ in range(BASELINE_KEYS):
                baseline.append(probe.press())
                time.sleep(KEY_INTERVAL_S)
            load = load_average()
            cpu_before = cpu_seconds(pid)
            submitted = time.perf_counter()
            tmux.send_key(name, "Enter")
            wait_until(lambda: KEY not in input_box(tmux.capture(name)), 10, "the input box to clear")
            probe.shown = 0
            latencies: list[float] = []
            while END_MARK not in probe.screen:
                tick = time.perf_counter()
                latencies.append(probe.press())
                if time.perf_counter() - submitted > RUN_LIMIT_S:
                    raise TimeoutError("the streamed answer did not end on screen")
                time.sleep(max(0.0, KEY_INTERVAL_S - (time.perf_counter() - tick)))
            # The end showed between two captures: the second-last capture bounds it from below.
            end_seen = time.perf_counter() - submitted
            cpu = cpu_seconds(pid) - cpu_before
            rss = rss_mb(pid)
            wait_until(lambda: "last turn" in tmux.capture(name), 60, "the run to finish")
        finally:
            stop_tui(tmux, name, pid)
        integrity = event_integrity(state, script)
        shutil.rmtree(state, ignore_errors=True)
    return {"load": load, "end_s": end_seen, "latencies": latencies, "baseline": baseline, "cpu_s": cpu,
            "rss_mb": rss, **integrity}


def streaming_tmux(runs: int, tmp: Path) -> list[Figure]:
    results = []
    with tmux_server() as tmux:
        for _ in range(runs):
            results.append(_one_tmux_run(tmux, tmp))
        paced = [_one_tmux_run(tmux, tmp, paced_script()) for _ in range(runs)]
    figures = _figures(results, "tmux")
    loads = [r["load"] for r in paced]
    lat = [r["latencies"] for r in paced]
    note = f"{PACED_WORDS:,} words at {PACED_TOKENS_PER_S} tokens/s (a fast GPU), keys every 100 ms"
    figures += [
        Figure("stream at 150 tokens/s: key -> screen p50 (tmux)", "ms", [1000 * percentile(x, 50) for x in lat],
               loads, 50, note=note),
        Figure("stream at 150 tokens/s: key -> screen p95 (tmux)", "ms", [1000 * percentile(x, 95) for x in lat],
               loads, 50, note=note),
        Figure("stream at 150 tokens/s: CPU of agent-tui (tmux)", "s", [r["cpu_s"] for r in paced], loads,
               note=f"over the whole answer, {PACED_WORDS:,} words"),
    ]
    return figures


def _figures(results: list[dict[str, Any]], where: str) -> list[Figure]:
    loads = [r["load"] for r in results]
    lat = [r["latencies"] for r in results]
    # In tmux a key is typed and read back off the screen; headless it is posted as the driver posts it and
    # read back from the input box (Pilot's press waits for an idle app, which a streaming app never is).
    key = "key -> screen" if where == "tmux" else "key -> input box"
    figures = [
        Figure(f"stream 20k words: Enter -> end visible ({where})", "s", [r["end_s"] for r in results], loads, 2.0,
               note="Reply.full_speed(20_000) + an end word; scripted server in its own process"),
        Figure(f"stream: words/s absorbed ({where})", "words/s", [WORDS / r["end_s"] for r in results], loads,
               higher_is_better=True),
        Figure(f"stream: tokens/s absorbed ({where})", "tokens/s", [TOKENS / r["end_s"] for r in results], loads,
               higher_is_better=True, note="one SSE content delta of 5 characters counted as one token"),
        Figure(f"stream: {key} p50 ({where})", "ms", [1000 * percentile(x, 50) for x in lat], loads, 50),
        Figure(f"stream: {key} p95 ({where})", "ms", [1000 * percentile(x, 95) for x in lat], loads, 50),
        Figure(f"stream: {key} max ({where})", "ms", [1000 * max(x) for x in lat], loads),
        Figure(f"stream: CPU of agent-tui during the stream ({where})", "s", [r["cpu_s"] for r in results], loads),
        Figure(f"stream: lost/duplicated events ({where})", "events",
               [r["seq_gaps"] + r["seq_duplicates"] + (0 if r["deltas_match_answer"] and r["final_matches_answer"]
                                                        else 1) for r in results], loads, 0,
               note="seq gaps + duplicates in events.jsonl, +1 if the deltas or final text differ from the reply",
               extra={"runs": [{k: v for k, v in r.items() if k not in ("latencies", "baseline", "lags")}
                               for r in results]}),
    ]
    if results[0].get("baseline"):
        figures.insert(5, Figure(f"idle: {key} p50, harness floor ({where})", "ms",
                                 [1000 * percentile(r["baseline"], 50) for r in results], loads,
                                 note="the same probe before the stream: tmux send-keys + capture-pane cost"))
    return figures


async def _press(app: Any, key: str, character: str | None) -> None:
    """A key as the terminal driver delivers it: posted to the app, without Pilot's wait for an idle app
    (the app is never idle while it streams: `pilot.press` returned only after the stream)."""
    from textual import events

    app.post_message(events.Key(key, character))


async def _key_latency(app: Any) -> float:
    """Post one KEY, return the time until the input box holds it."""
    prompt = app.main_screen.prompt
    expected = prompt.text.count(KEY) + 1
    started = time.perf_counter()
    await _press(app, KEY, KEY)
    deadline = started + 30
    while prompt.text.count(KEY) < expected:
        if time.perf_counter() > deadline:
            raise TimeoutError("a posted key never reached the input box")
        await asyncio.sleep(0.001)
    return time.perf_counter() - started


async def _headless_run(tmp: Path) -> dict[str, Any]:
    from core.config import load_settings
    from tui.__main__ import _make_engine_factory
    from tui.app import DevAgentApp

    with ModelServerProcess(reply_script(), tmp) as server:
        env, state = stream_env(server.url, tmp)
        settings = load_settings(env)
        app = DevAgentApp(engine_factory=_make_engine_factory(settings), workspace_label=str(settings.workspace))
        lags: list[float] = []
        async with app.run_test(size=(120, 40)) as pilot:
            await _until(lambda: app.engine is not None, 60)
            engine = app.engine
            assert engine is not None
            for key in "go":
                await pilot.press(key)
            baseline = [await _key_latency(app) for _ in range(BASELINE_KEYS)]
            load = load_average()
            cpu_before = time.process_time()
            submitted = time.perf_counter()
            await _press(app, "enter", "\r")
            stop = asyncio.Event()
            lag_task = asyncio.create_task(_loop_lag(lags, stop))
            ended = asyncio.create_task(_until(
                lambda: app.last_answer.endswith(END_MARK) and not app.main_screen.transcript.query(".streaming"),
                RUN_LIMIT_S))
            await _until(lambda: KEY not in app.main_screen.prompt.text, 10)  # submitted: the box is empty
            latencies: list[float] = []
            while not ended.done():
                tick = time.perf_counter()
                latencies.append(await _key_latency(app))
                await asyncio.wait([ended], timeout=max(0.0, KEY_INTERVAL_S - (time.perf_counter() - tick)))
            await ended
            end = time.perf_counter() - submitted
            cpu = time.process_time() - cpu_before
            stop.set()
            await lag_task
            await engine.wait_idle()
            rss = rss_mb()
        integrity = event_integrity(state)
    return {"load": load, "end_s": end, "latencies": latencies, "baseline": baseline, "lags": lags, "cpu_s": cpu,
            "rss_mb": rss, **integrity}


async def _engine_run(tmp: Path) -> dict[str, Any]:
    """The same stream through the Engine alone (no UI): the floor the SDK and the log put under any client."""
    from core.config import load_settings
    from core.engine import Engine

    with ModelServerProcess(reply_script(), tmp) as server:
        env, state = stream_env(server.url, tmp)
        settings = load_settings(env)
        session = SessionStore(settings.state_dir).create(workspace=settings.workspace, model=None, client="bench")
        session.acquire()
        engine = Engine(settings, session, client="bench")
        await engine.start()
        load = load_average()
        cpu_before = time.process_time()
        submitted = time.perf_counter()
        lags: list[float] = []
        stop = asyncio.Event()
        lag_task = asyncio.create_task(_loop_lag(lags, stop))
        await engine.submit("go")
        await engine.wait_idle()
        end = time.perf_counter() - submitted
        cpu = time.process_time() - cpu_before
        stop.set()
        await lag_task
        await engine.close()
        integrity = event_integrity(state)
    return {"load": load, "end_s": end, "cpu_s": cpu, "lag_p95": percentile(lags, 95), "lag_max": max(lags),
            **integrity}


def streaming_engine(runs: int, tmp: Path) -> list[Figure]:
    results = [asyncio.run(_engine_run(tmp)) for _ in range(runs)]
    loads = [r["load"] for r in results]
    return [Figure("stream 20k words: engine alone, submit -> idle", "s", [r["end_s"] for r in results], loads,
                   note="Engine + SessionLog, no UI: SDK stream parsing + delta coalescing + fsync",
                   extra={"runs": results}),
            Figure("stream 20k words: engine alone, CPU", "s", [r["cpu_s"] for r in results], loads),
            Figure("stream: loop lag p95 (engine alone)", "ms", [1000 * r["lag_p95"] for r in results], loads,
                   note="the SDK's stream handling by itself, no UI on the loop"),
            Figure("stream: loop lag max (engine alone)", "ms", [1000 * r["lag_max"] for r in results], loads)]


async def _until(check: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached in the headless app")
        await asyncio.sleep(0.01)


async def _loop_lag(lags: list[float], stop: asyncio.Event) -> None:
    """How late a 10 ms sleep wakes: the keystroke-latency proxy of research/textual.md."""
    while not stop.is_set():
        before = time.perf_counter()
        await asyncio.sleep(0.01)
        lags.append(time.perf_counter() - before - 0.01)


def streaming_headless(runs: int, tmp: Path) -> list[Figure]:
    results = [asyncio.run(_headless_run(tmp)) for _ in range(runs)]
    figures = _figures(results, "headless")
    loads = [r["load"] for r in results]
    figures.append(Figure("stream: loop lag p95 (headless)", "ms",
                          [1000 * percentile(r["lags"], 95) for r in results], loads, 50,
                          note="lateness of a 10 ms asyncio.sleep while streaming"))
    figures.append(Figure("stream: loop lag max (headless)", "ms", [1000 * max(r["lags"]) for r in results], loads))
    return figures
