"""Fixtures for core tests: a scripted model server and started engines over it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core.config import Settings, load_settings
from core.engine import Engine
from core.session_log import SessionStore
from tests.fakes.model_server import ScriptedModelServer


@pytest.fixture
def server() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer(model_id="scripted-model") as s:
        yield s


@pytest.fixture
def engine_settings(server: ScriptedModelServer, workspace: Path, state_dir: Path) -> Callable[..., Settings]:
    """Settings for an engine on the scripted server; keyword arguments are extra environment variables."""

    def make(**env: str) -> Settings:
        return load_settings({"HOME": str(state_dir), "OPENAI_BASE_URL": server.url, "OPENAI_API_KEY": "k",
                              "AGENT_WORKSPACE": str(workspace), "AGENT_STATE_DIR": str(state_dir),
                              "AGENT_REVIEW_ROUNDS": "0", **env})

    return make


async def open_engine(settings: Settings) -> Engine:
    """A new session and its started engine."""
    session = SessionStore(settings.state_dir).create(workspace=settings.workspace, model=None,
                                                      base_url=settings.base_url)
    engine = Engine(settings, session, client="test")
    await engine.start()
    return engine
