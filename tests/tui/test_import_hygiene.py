"""Start-up discipline: importing the app leaves the SDK, openai, git and MCP for after the first frame."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("agents", "openai", "git", "mcp")


def loaded_after(statement: str) -> list[str]:
    code = f"{statement}; import json, sys; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def test_importing_the_app_leaves_the_sdk_openai_git_and_mcp_unloaded() -> None:
    modules = loaded_after("import tui.app, tui.__main__")
    heavy = [name for name in modules if name.split(".")[0] in HEAVY]
    assert heavy == []


def test_the_entry_module_does_not_import_textual_before_choosing_colours() -> None:
    modules = loaded_after("import tui.__main__")
    assert not [name for name in modules if name.split(".")[0] == "textual"]


def test_the_first_frame_needs_neither_pydantic_nor_yaml_nor_a_markdown_parser() -> None:
    # Settings are read after the first frame; Markdown and Pygments load with the first answer or diff.
    modules = loaded_after("import tui.app, tui.__main__")
    late = [name for name in modules if name.split(".")[0] in ("pydantic", "yaml", "markdown_it", "pygments")]
    assert late == []
