"""Idle discipline: a started engine that has not written anything leaves GitPython unloaded."""

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


def test_a_started_engine_loads_git_only_when_a_checkpoint_needs_it(workspace: Path, state_dir: Path) -> None:
    result = subprocess.run([sys.executable, "-c", START_ENGINE, str(state_dir), str(workspace)], cwd=ROOT,
                            capture_output=True, text=True, check=True)
    modules = json.loads(result.stdout)
    assert "core.checkpoints" in modules
    assert [name for name in modules if name.split(".")[0] == "git"] == []
