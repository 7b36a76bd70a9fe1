"""Fixtures for end-to-end tests: a scripted model server and the environment a real process runs with."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.model_server import ScriptedModelServer

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def model_server() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer(model_id="scripted-model", context_length=32768) as server:
        yield server


@pytest.fixture
def agent_env(model_server: ScriptedModelServer, workspace: Path, state_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT_", "OPENAI_"))}
    env.update({
        "OPENAI_BASE_URL": model_server.url,
        "OPENAI_API_KEY": "test-key",
        "AGENT_WORKSPACE": str(workspace),
        "AGENT_STATE_DIR": str(state_dir),
        "AGENT_TOOLS_DIR": str(state_dir / "tools"),
        "PYTHONPATH": str(REPO),
        "OPENAI_AGENTS_DISABLE_TRACING": "0",
        # A warm server someone runs on this machine must not serve the tests' agent-tui (test_warm_start.py
        # starts its own).
        "AGENT_TUI_WARM": "off",
    })
    return env


def agent_bin() -> str:
    return str(Path(sys.executable).with_name("agent"))
