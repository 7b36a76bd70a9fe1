"""Run the benchmarks (`python -m tests.benchmarks [--quick] [--only NAME ...]`): print a table, write JSON."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.benchmarks import engine_overhead, resume, startup, streaming, warm
from tests.benchmarks.common import Figure, load_average

RESULTS = Path(__file__).resolve().parent / "results"

# name -> (runner, full runs, quick runs)
BENCHMARKS: dict[str, tuple[Callable[[int, Path], list[Figure]], int, int]] = {
    "cold_start": (startup.cold_start, 7, 3),
    "warm_start": (warm.warm_start, 7, 3),
    "cli": (startup.cli_wall_times, 7, 3),
    "streaming": (streaming.streaming_tmux, 3, 1),
    "streaming_headless": (streaming.streaming_headless, 3, 1),
    "streaming_engine": (streaming.streaming_engine, 3, 1),
    "engine": (engine_overhead.engine_overhead, 3, 1),
    "resume": (resume.resume, 5, 2),
    "picker": (resume.picker, 7, 3),
    "idle": (startup.idle, 3, 1),
}


def _format(value: float) -> str:
    if value != value:  # NaN: the figure has no runs
        return "-"
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def print_table(figures: list[Figure]) -> None:
    header = ("figure", "median", "unit", "runs", "load", "target", "verdict")
    rows = [header] + [
        (f.name, _format(f.median), f.unit, str(len(f.values)),
         f"{min(f.loads):.1f}-{max(f.loads):.1f}" if f.loads else "-",
         ("≥ " if f.higher_is_better else "≤ ") + _format(f.target) if f.target is not None else "-", f.verdict)
        for f in figures]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for index, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            print("  ".join("-" * width for width in widths))


def markdown_table(report: dict[str, Any]) -> str:
    """The results of a run as the Markdown table docs/BENCHMARKS.md shows."""
    lines = ["| figure | median | runs | load (1 min) | target | verdict |", "| --- | --- | --- | --- | --- | --- |"]
    for f in report["figures"]:
        target = "–" if f["target"] is None else ("≥ " if f["higher_is_better"] else "≤ ") + _format(f["target"])
        loads = f"{min(f['loads']):.1f}–{max(f['loads']):.1f}" if f["loads"] else "–"
        lines.append(f"| {f['name'].strip()} | {_format(f['median'])} {f['unit']} | {f['runs']} | {loads} | "
                     f"{target} | {f['verdict']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer runs per figure")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), metavar="NAME",
                        help=f"run only these: {', '.join(BENCHMARKS)}")
    parser.add_argument("--runs", type=int, help="runs per figure (overrides the defaults)")
    parser.add_argument("--markdown", type=Path, metavar="RESULTS_JSON", help="print a results file as Markdown")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown_table(json.loads(args.markdown.read_text())))
        return 0
    names = args.only or list(BENCHMARKS)
    figures: list[Figure] = []
    failures: dict[str, str] = {}
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="dev-agent-bench-") as tmp:
        for name in names:
            runner, full, quick = BENCHMARKS[name]
            runs = args.runs or (quick if args.quick else full)
            print(f"[{time.strftime('%H:%M:%S')}] {name}: {runs} run(s), load {load_average():.2f}",
                  file=sys.stderr, flush=True)
            directory = Path(tmp) / name
            directory.mkdir()
            try:
                figures += runner(runs, directory)
            except Exception as exc:  # one broken benchmark must not hide the others' results
                failures[name] = f"{type(exc).__name__}: {exc}"
                print(f"  {name} failed: {failures[name]}", file=sys.stderr)
    print_table(figures)
    for name, error in failures.items():
        print(f"FAILED {name}: {error}")
    report = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_s": round(time.time() - started, 1),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "quick": args.quick,
        "figures": [figure.to_json() for figure in figures],
        "failures": failures,
    }
    RESULTS.mkdir(exist_ok=True)
    text = json.dumps(report, indent=2)
    (RESULTS / f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(started))}.json").write_text(text)
    (RESULTS / "latest.json").write_text(text)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
