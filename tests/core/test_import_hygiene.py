"""Idle discipline: a started engine loads neither GitPython before its first write nor unconfigured MCP."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

START_ENGINE = """
import asyncio, json, sys
from core.config import load_settings
from tests.core.conftest import open_engine
from tests.fakes.model_server import ScriptedModelServer

async def main():
    with ScriptedModelServer() as server:
        settings = load_settings({"OPENAI_BASE_URL": server.url, "OPENAI_API_KEY": "k", "HOME": sys.argv[1],
                                  "AGENT_WORKSPACE": sys.argv[2], "AGENT_STATE_DIR": sys.argv[1]})
        engine = await open_engine(settings)
        print(json.dumps(sorted(sys.modules)))
        await engine.close()

asyncio.run(main())
"""


def started_engine_modules(workspace: Path, state_dir: Path) -> list[str]:
    result = subprocess.run([sys.executable, "-c", START_ENGINE, str(state_dir), str(workspace)], cwd=ROOT,
                            capture_output=True, text=True, check=True)
    modules: list[str] = json.loads(result.stdout)
    return modules


def test_a_started_engine_loads_git_only_when_a_checkpoint_needs_it_and_mcp_only_when_configured(
    workspace: Path, state_dir: Path
) -> None:
    modules = started_engine_modules(workspace, state_dir)
    assert "core.checkpoints" in modules
    assert [name for name in modules if name.split(".")[0] == "git"] == []
    assert [name for name in modules if name in ("core.mcp", "agents.mcp.server", "agents.mcp.manager")] == []
