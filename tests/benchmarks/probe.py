"""Measurements that need a fresh process (cold imports, clean RSS); prints one JSON object on stdout."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

PROCESS_START = time.perf_counter()


async def _until(check: Any, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached in the headless app")
        await asyncio.sleep(0.005)


async def resume(state: Path, session_id: str) -> dict[str, Any]:
    """SessionStore.open + read_events, then the headless app replaying them until the last answer is painted."""
    from core.session_log import SessionStore
    from tests.benchmarks.common import rss_mb
    from tests.benchmarks.workloads import LAST_ANSWER_MARK
    from tests.tui.engine_double import RecordingEngine, make_app

    imported = time.perf_counter()
    log = SessionStore(state).open(session_id)
    opened = time.perf_counter()
    events = log.read_events()
    read = time.perf_counter()
    rss_read = rss_mb()
    app, _engine = make_app(RecordingEngine(events))
    started = time.perf_counter()
    cpu_started = time.process_time()
    async with app.run_test(size=(120, 40)) as pilot:
        transcript = app.main_screen.transcript
        await _until(lambda: app.engine is not None and transcript.children and transcript.children[-1].is_mounted)
        await pilot.pause()
        replayed = time.perf_counter()
        replay_cpu = time.process_time() - cpu_started
        # The older messages are filled in above the newest after the first paint; the pause above usually
        # waits for them too (it waits for the app to be idle, at most 1 s): this says when they all were.
        await _until(lambda: not transcript.backfilling)
        filled = time.perf_counter()
        shown = LAST_ANSWER_MARK in app.export_screenshot()
        rss = rss_mb()
    return {"imports_s": imported - PROCESS_START, "open_s": opened - imported, "read_s": read - opened,
            "events": len(events), "replay_s": replayed - started, "replay_cpu_s": replay_cpu,
            "resume_s": replayed - imported, "filled_s": max(filled, replayed) - imported,
            "rss_after_read_mb": rss_read, "rss_mb": rss, "last_message_shown": shown}


async def picker(state: Path, workspace: Path) -> dict[str, Any]:
    """SessionStore.list(), then ctrl+r -> the picker painted with every session (cold, then a second time)."""
    from core.session_log import SessionStore
    from tests.tui.engine_double import RecordingEngine, make_app, whole_run
    from tui.screens.session_picker import MAX_ROWS, SessionPickerScreen

    store = SessionStore(state)
    started = time.perf_counter()
    count = len(store.list(workspace))
    listed = time.perf_counter() - started

    async def opened_session(session_id: str) -> None:
        raise AssertionError("the benchmark never opens a session")

    app, _engine = make_app(RecordingEngine(whole_run()), sessions_provider=lambda: store.list(workspace),
                            on_open_session=opened_session)
    times: list[float] = []
    async with app.run_test(size=(120, 40)) as pilot:
        await _until(lambda: app.engine is not None)
        await pilot.pause()
        for _ in range(2):
            started = time.perf_counter()
            await pilot.press("ctrl+r")
            await _until(lambda: isinstance(app.screen, SessionPickerScreen)
                         # the picker renders the newest MAX_ROWS; its filter searches them all
                         and len(app.screen.shown_ids) == min(count, MAX_ROWS))
            await pilot.pause()
            times.append(time.perf_counter() - started)
            await pilot.press("escape")
            await _until(lambda: not isinstance(app.screen, SessionPickerScreen))
    return {"sessions": count, "list_s": listed, "open_cold_s": times[0], "open_warm_s": times[1]}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.probe")
    sub = parser.add_subparsers(dest="probe", required=True)
    r = sub.add_parser("resume")
    r.add_argument("state", type=Path)
    r.add_argument("session_id")
    p = sub.add_parser("picker")
    p.add_argument("state", type=Path)
    p.add_argument("workspace", type=Path)
    args = parser.parse_args()
    if args.probe == "resume":
        result = asyncio.run(resume(args.state, args.session_id))
    else:
        result = asyncio.run(picker(args.state, args.workspace))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
