"""The agent does real work on a real model: full-auto, ask + resume in a new process, doctor.

Every test runs once per chat template (see conftest: "fixed" = llama-server parses the ```json fences into
tool_calls; "stock" = the model's own template, the engine's text-tool-call recovery does the parsing).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.realmodel.conftest import (
    CONTEXT,
    MODEL_ID,
    AgentRun,
    LlamaServer,
    python_output,
    record,
    run_agent,
)

pytestmark = pytest.mark.realmodel

# Phrased the way a 1.5B model gets right first time: file name, exact output, and "use write_file".
HELLO_GOAL = 'Create the file hello.py with write_file. It must print exactly: Hello, world!'
GREET_GOAL = 'Create the Python script greet.py with write_file. Its code is: print("Hi there")'
MAX_APPROVALS = 4


def _check_program(workspace: Path, script: str, expected: str, runs: list[AgentRun]) -> str:
    detail = "\n\n".join(r.describe() for r in runs)
    assert (workspace / script).is_file(), f"{script} was not created\n{detail}"
    out = python_output(workspace, script)
    assert out.returncode == 0, f"python {script} failed: {out.stderr}\n{detail}"
    assert out.stdout.strip() == expected, f"python {script} printed {out.stdout!r}\n{detail}"
    return out.stdout.strip()


def test_full_auto_creates_a_working_program(llama_server: LlamaServer, realmodel_env: dict[str, str]) -> None:
    workspace = Path(realmodel_env["AGENT_WORKSPACE"])
    run = run_agent(["run", "--approval", "full-auto", "--json", HELLO_GOAL], realmodel_env)
    ok = False
    try:
        assert run.returncode == 0, run.describe()
        assert run.final().get("status") == "done", run.describe()
        _check_program(workspace, "hello.py", "Hello, world!", [run])
        ok = True
    finally:
        record("full-auto hello.py", llama_server.template, ok, [run],
               note=" ".join(t for t, _, _ in run.tool_calls))


def test_ask_mode_pauses_and_a_new_process_approves(llama_server: LlamaServer,
                                                     realmodel_env: dict[str, str]) -> None:
    workspace = Path(realmodel_env["AGENT_WORKSPACE"])
    first = run_agent(["run", "--approval", "ask", "--json", GREET_GOAL], realmodel_env)
    runs = [first]
    ok = False
    try:
        assert first.returncode == 4, "ask mode without a TTY must pause (exit 4)\n" + first.describe()
        assert "--approve" in first.stderr and first.session_id, first.describe()
        pending = [e for e in first.events if e.get("type") == "approval_requested"]
        assert pending and pending[-1]["tool"] == "write_file", first.describe()
        assert not (workspace / "greet.py").exists(), "nothing may be written before approval"
        # Each approval is a new process that restores the paused run from disk. The model may ask for
        # a second approval (e.g. to run the program it wrote): approve that too, a bounded number of times.
        while runs[-1].returncode == 4 and len(runs) <= MAX_APPROVALS:
            runs.append(run_agent(["run", "--resume", first.session_id, "--approve", "--json"], realmodel_env))
        last = runs[-1]
        assert last.returncode == 0, "\n\n".join(r.describe() for r in runs)
        _check_program(workspace, "greet.py", "Hi there", runs)
        ok = True
    finally:
        record("ask + resume --approve", llama_server.template, ok, runs,
               note=f"{len(runs) - 1} approval process(es)")


def test_doctor_reports_model_and_context(llama_server: LlamaServer, realmodel_env: dict[str, str]) -> None:
    run = run_agent(["doctor", "--json"], realmodel_env, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    checks = {c["name"]: c for c in json.loads(run.stdout)}
    assert checks["endpoint"]["ok"] and "llama.cpp" in checks["endpoint"]["detail"], checks["endpoint"]
    assert checks["model"]["ok"] and checks["model"]["detail"] == MODEL_ID, checks["model"]
    assert checks["context window"]["ok"], checks["context window"]
    assert checks["context window"]["detail"].startswith(f"{CONTEXT} tokens"), checks["context window"]
