"""Many-trial reliability runner: `python -m tests.reliability [--trials N]` prints pass counts per check."""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections import Counter
from pathlib import Path

from tests.reliability import corpus
from tests.reliability.crash import crash_trial
from tools.workspace import Workspace


def corpora_counts() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        layout = corpus.build_layout(Path(tmp) / "read")
        ws = Workspace(layout.root, corpus.policy().paths)
        paths = corpus.load("path_escapes.jsonl")
        failed = [c for c in paths if corpus.check_path(ws, layout, c)]
        print(f"path corpus (resolve read+write, read_file): {len(paths) - len(failed)}/{len(paths)} "
              f"refused or confined")
        for case in failed:
            print(f"  FAIL {case['path'][:100]!r}: {corpus.check_path(ws, layout, case)}")
        layout = corpus.build_layout(Path(tmp) / "write")
        ws = Workspace(layout.root, corpus.policy().paths)
        before = layout.guarded_digest()
        failed = [c for c in paths if corpus.check_write(ws, layout, c)]
        intact = layout.guarded_digest() == before
        print(f"path corpus (write_file): {len(paths) - len(failed)}/{len(paths)} refused or written inside; "
              f"outside tree and protected files {'unchanged' if intact else 'CHANGED'}")
        policy = corpus.policy()
        commands = corpus.load("command_bypasses.jsonl")
        by_category: Counter[str] = Counter()
        allowed: Counter[str] = Counter()
        for case in commands:
            by_category[case["category"]] += 1
            if corpus.check_command(policy, layout, case):
                allowed[case["category"]] += 1
        total_bad = sum(allowed.values())
        print(f"command corpus: {len(commands) - total_bad}/{len(commands)} never allowed in ask, auto-edit "
              f"and full-auto (shipped policies, ALLOW_NET=false)")
        for category, count in sorted(by_category.items()):
            print(f"  {category:<14} {count - allowed[category]:>4}/{count}")


def crash_counts(trials: int, seed: int) -> None:
    passed = kills = resumes = unlogged = 0
    for mode in ("full-auto", "ask"):
        runs = trials if mode == "full-auto" else max(1, trials // 3)
        mode_passed = 0
        started = time.monotonic()
        for i in range(runs):
            rng = random.Random(seed * 1000 + i + (500 if mode == "ask" else 0))
            with tempfile.TemporaryDirectory() as tmp:
                result = crash_trial(Path(tmp), rng, mode=mode, kills=rng.randint(1, 3), cli_listing=1)
            kills += result.kills
            resumes += result.resumes
            unlogged += result.unlogged_windows
            if result.problems:
                print(f"  FAIL {mode} trial {i}: kills {result.kill_points}: {result.problems}", flush=True)
            else:
                mode_passed += 1
        passed += mode_passed
        print(f"crash trials ({mode}): {mode_passed}/{runs} consistent after every kill and finished on resume "
              f"({time.monotonic() - started:.0f} s)", flush=True)
    print(f"  SIGKILLs delivered: {kills}; resumed processes: {resumes}; changes on disk whose "
          f"tool_call_finished the kill beat (requested in the log, not lost): {unlogged}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability", description=__doc__)
    parser.add_argument("--trials", type=int, default=30, help="crash trials in full-auto (ask mode: a third)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-crash", action="store_true", help="only the corpora (a few seconds)")
    args = parser.parse_args()
    corpora_counts()
    if not args.no_crash:
        crash_counts(args.trials, args.seed)


if __name__ == "__main__":
    main()
