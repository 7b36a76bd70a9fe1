"""A real engine process for crash tests: runs a goal until it pauses for approval, says so, then waits to be killed."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from core.config import load_settings
from core.engine import Engine
from core.session_log import SessionStore


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("goal")
    args = parser.parse_args()
    settings = load_settings(os.environ)
    session = SessionStore(settings.state_dir).create(workspace=settings.workspace, model=settings.model,
                                                      base_url=settings.base_url, client="driver")
    session.acquire()
    engine = Engine(settings, session, client="driver")
    await engine.start()
    await engine.submit(args.goal)
    await engine.wait_idle()
    print(f"{session.id} {'PAUSED' if engine.pending_approvals else 'IDLE'}", flush=True)
    sys.stdout.flush()
    await asyncio.sleep(3600)  # the test kills this process with SIGKILL


if __name__ == "__main__":
    asyncio.run(main())
