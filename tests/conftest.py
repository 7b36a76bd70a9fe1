"""Shared fixtures: an isolated workspace and state directory per test, and a clean environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "workspace"
    ws.mkdir()
    return ws


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    sd = tmp_path / "state"
    sd.mkdir()
    return sd


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never inherit the developer's model endpoint, key or state directory."""
    for name in list(os.environ):
        if name.startswith(("AGENT_", "OPENAI_")) or name == "ALLOW_NET":
            monkeypatch.delenv(name, raising=False)
