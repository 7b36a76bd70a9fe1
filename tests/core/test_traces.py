"""Local tracing: spans and traces go to the state dir's JSONL files, and nothing is set up to upload them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

TRACE_ONCE = """
import sys
from pathlib import Path
from agents import custom_span, trace
from agents.tracing import processors
from core.traces import install_local_tracing

install_local_tracing(Path(sys.argv[1]))
with trace("a run"):
    with custom_span("a step"):
        pass
print(processors._global_exporter is None and processors._global_processor is None)
"""


def test_traces_are_written_locally_without_the_sdk_uploader(state_dir: Path) -> None:
    # A fresh process: the SDK's trace provider is process-wide.
    result = subprocess.run([sys.executable, "-c", TRACE_ONCE, str(state_dir)], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    assert result.stdout.strip() == "True"
    (written,) = (state_dir / "traces").glob("*.jsonl")
    lines = [json.loads(line) for line in written.read_text().splitlines()]
    assert [line["object"] for line in lines] == ["trace.span", "trace"]
    assert lines[0]["span_data"]["name"] == "a step" and lines[1]["workflow_name"] == "a run"
