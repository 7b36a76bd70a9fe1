"""SIGKILL at random points of a real multi-tool `agent run`: the log, the listing and the workspace stay consistent."""

from __future__ import annotations

import random
from pathlib import Path

from tests.reliability.crash import crash_trial

# Fixed: a failure must reproduce; the many-trial runner (`python -m tests.reliability`) varies the seed.
SEED = 20261121


def test_three_kills_then_resume_finishes_the_task(tmp_path: Path) -> None:
    result = crash_trial(tmp_path, random.Random(SEED), mode="full-auto", kills=3, cli_listing=0)
    assert not result.problems, (result.kill_points, result.problems)
    assert result.resumes >= 1
