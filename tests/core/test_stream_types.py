"""A first run builds no pydantic validator on the event loop (it froze keys and screen for 0.3-0.5 s).

In a fresh process, as a user has it: every test before this one in the suite has built them already.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.fakes.model_server import Reply, ScriptedModelServer, ToolCall

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent('''
    import asyncio, json, sys, threading
    from pathlib import Path
    from pydantic import BaseModel
    from core.config import load_settings
    from core.engine import Engine
    from core.events import AssistantMessage
    from core.session_log import SessionStore

    started = False
    on_loop = []
    rebuild = BaseModel.model_rebuild.__func__

    def recording(cls, *args, **kwargs):
        if started and threading.current_thread() is threading.main_thread() and not cls.__pydantic_complete__:
            on_loop.append(f"{cls.__module__}.{cls.__qualname__}")
        return rebuild(cls, *args, **kwargs)

    BaseModel.model_rebuild = classmethod(recording)
    state = Path(sys.argv[2])
    settings = load_settings({"HOME": str(state), "OPENAI_BASE_URL": sys.argv[1], "OPENAI_API_KEY": "k",
                              "AGENT_WORKSPACE": str(state), "AGENT_STATE_DIR": str(state / "state"),
                              "AGENT_REVIEW_ROUNDS": "0"})

    async def main():
        global started
        session = SessionStore(settings.state_dir).create(workspace=settings.workspace, model=None)
        engine = Engine(settings, session, client="test")
        await engine.start()
        started = True  # what the engine's start builds happens while the app says "connecting"
        answers = []
        engine.subscribe(lambda event: answers.append(event.text) if isinstance(event, AssistantMessage) else None)
        await engine.submit("go")
        await engine.wait_idle()
        await engine.close()
        return answers

    answers = asyncio.run(main())
    print(json.dumps({"answers": answers, "built_on_loop": on_loop}))
''')


def test_a_first_run_builds_no_validator_on_the_event_loop(tmp_path: Path) -> None:
    with ScriptedModelServer(model_id="scripted-model") as server:
        server.add(Reply(tool_calls=[ToolCall("list_dir", {"path": "."})]), Reply(text="the answer, streamed"))
        done = subprocess.run([sys.executable, "-c", SCRIPT, server.url, str(tmp_path)], cwd=REPO,
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["answers"][-1] == "the answer, streamed"
    assert result["built_on_loop"] == [], result["built_on_loop"]
