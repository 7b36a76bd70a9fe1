"""`agent-tui`: check the terminal, read the settings, run the app (the engine starts after the first frame)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.config import Settings
    from core.engine import Engine

NO_TTY_MESSAGE = ("agent-tui needs an interactive terminal (a TTY). Use 'docker exec -it ...' (with -t), "
                  "or run 'agent run GOAL' for headless use.")
RESUME_PICKER = ""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agent-tui", description="dev-agent's terminal interface.")
    parser.add_argument("goal", nargs="?", metavar="GOAL", help="start this run at once")
    parser.add_argument("--workspace", metavar="DIR", help="the only tree the agent may read or write")
    parser.add_argument("--state-dir", metavar="DIR", help="where sessions, audit and checkpoints live")
    parser.add_argument("--model", metavar="NAME", help="model id (default: the first the endpoint lists)")
    parser.add_argument("--base-url", metavar="URL", help="OpenAI-compatible endpoint, e.g. LM Studio's /v1")
    parser.add_argument("--approval", choices=("ask", "auto-edit", "full-auto"), help="approval mode")
    resume = parser.add_mutually_exclusive_group()
    resume.add_argument("--resume", nargs="?", const=RESUME_PICKER, metavar="SESSION_ID",
                        help="open this session (id or unique prefix); without an id, pick one")
    resume.add_argument("--continue", dest="continue_", action="store_true",
                        help="open the most recently updated session of this workspace")
    return parser


def _color_environment(env: dict[str, str] | os._Environ[str]) -> None:
    """docker exec -t sets TERM=xterm, which Textual paints in 16 colours: ask for 256 unless told otherwise."""
    if env.get("TERM", "xterm") == "xterm" and "COLORTERM" not in env and "TEXTUAL_COLOR_SYSTEM" not in env:
        env["TEXTUAL_COLOR_SYSTEM"] = "256"


def _load_settings(args: argparse.Namespace) -> Settings:
    from core.config import load_settings

    overrides: dict[str, Any] = {"workspace": args.workspace, "state_dir": args.state_dir, "model": args.model,
                                 "base_url": args.base_url, "approval": args.approval}
    return load_settings(os.environ, overrides)


def _make_engine_factory(settings: Settings, *, session_id: str | None = None,
                         latest: bool = False) -> Callable[[], Awaitable[Engine]]:
    """A coroutine factory that opens (or creates) the session and starts its engine; core is imported inside.

    A retry after a failed start reopens the session the first attempt created instead of making another.
    """
    chosen = session_id

    async def start_engine() -> Engine:
        nonlocal chosen
        import asyncio
        import importlib
        from pathlib import Path

        # The SDK, openai and git take seconds to import on a cold start: import them off the event loop so
        # the first frame is complete and keys (ctrl+q) work meanwhile.
        engine_module, log_module = await asyncio.to_thread(
            lambda: (importlib.import_module("core.engine"), importlib.import_module("core.session_log")))
        Engine, SessionStore = engine_module.Engine, log_module.SessionStore

        store = SessionStore(settings.state_dir)
        if chosen is None and latest:
            summary = store.latest(settings.workspace)
            chosen = summary.id if summary else None
        if chosen is None:
            session = store.create(workspace=settings.workspace, model=settings.model, base_url=settings.base_url,
                                   approval_mode=settings.approval, client="tui")
            chosen = session.id
        else:
            session = store.open(chosen)
        workspace = Path(session.meta.workspace) if session.meta.workspace else settings.workspace
        # A session resumes in its own workspace (the picker lists other workspaces' sessions too).
        session_settings = settings if not workspace.is_dir() else settings.model_copy(update={"workspace": workspace})
        session.acquire()
        engine = Engine(session_settings, session, client="tui")
        try:
            await engine.start()
        except BaseException:
            await engine.close()
            raise
        return engine

    return start_engine


def _sessions_provider(settings: Settings) -> Callable[[], Sequence[Any]]:
    def list_sessions() -> Sequence[Any]:
        from core.session_log import SessionStore

        return SessionStore(settings.state_dir).list(settings.workspace)

    return list_sessions


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        print(NO_TTY_MESSAGE, file=sys.stderr)
        return 2
    _color_environment(os.environ)

    from core.errors import ConfigError

    try:
        settings = _load_settings(args)
    except ConfigError as exc:
        print(f"agent-tui: {exc}", file=sys.stderr)
        return 2

    from tui.app import DevAgentApp

    pick_first = args.resume == RESUME_PICKER
    factory = None if pick_first else _make_engine_factory(settings, session_id=args.resume,
                                                           latest=args.continue_)

    async def open_session(session_id: str) -> None:
        await app.open_engine(_make_engine_factory(settings, session_id=session_id))

    app = DevAgentApp(
        engine_factory=factory,
        initial_goal=args.goal,
        workspace_label=str(settings.workspace),
        model_label=settings.model or "",
        approval_mode=settings.approval,
        sessions_provider=_sessions_provider(settings),
        on_open_session=open_session,
        open_session_picker=pick_first,
        watch_workspace=True,
    )
    app.run()
    return 0 if app.return_code is None else app.return_code


if __name__ == "__main__":
    sys.exit(main())
