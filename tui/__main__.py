"""`agent-tui`: check the terminal, run the app, and read the settings and start the engine after the first frame."""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.config import Settings
    from core.engine import Engine
    from core.session_log import SessionStore
    from tui.app import DevAgentApp

EngineFactory = Callable[[], Awaitable["Engine"]]

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
    parser.add_argument("--warm-server", action="store_true",
                        help="preload the app and the SDK, then start each agent-tui from them in a fraction of "
                             "the time (the container runs this; see README 'Warm start')")
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


class SettingsLoader:
    """The settings, read once on first use: pydantic and yaml cost ~0.15 CPU-s, so they load after the first frame."""

    def __init__(self, args: argparse.Namespace) -> None:
        self._args = args
        self._lock = threading.Lock()
        self._settings: Settings | None = None

    def __call__(self) -> Settings:
        # Called from worker threads (the engine start and the session picker may both need it first).
        with self._lock:
            if self._settings is None:
                self._settings = _load_settings(self._args)
            return self._settings


def first_frame_labels(args: argparse.Namespace, env: Mapping[str, str]) -> dict[str, str]:
    """The status bar's workspace, model and approval mode as flags and environment give them, without pydantic.

    The engine's session_started event replaces them with the validated values (settings.yaml included).
    """
    workspace = (args.workspace or env.get("AGENT_WORKSPACE", "")).strip() or os.getcwd()
    return {
        "workspace_label": os.path.realpath(os.path.expanduser(workspace)),
        "model_label": (args.model or env.get("AGENT_MODEL", "")).strip(),
        "approval_mode": (args.approval or env.get("AGENT_APPROVAL", "")).strip() or "ask",
    }


def _after_settings(load: Callable[[], Settings], build: Callable[[Settings], EngineFactory]) -> EngineFactory:
    """An engine factory that first reads the settings (off the event loop), then builds and keeps the real one."""
    factory: EngineFactory | None = None

    async def start_engine() -> Engine:
        nonlocal factory
        if factory is None:
            import asyncio

            factory = build(await asyncio.to_thread(load))
        return await factory()

    return start_engine


def _session_to_reopen(store: SessionStore, settings: Settings, session_id: str | None, *,
                       latest: bool) -> str | None:
    """The session named, or with --continue the workspace's most recent one; None means a new session."""
    if session_id is None and latest:
        summary = store.latest(settings.workspace)
        return summary.id if summary else None
    return session_id


def _make_engine_factory(settings: Settings, *, session_id: str | None = None,
                         latest: bool = False) -> EngineFactory:
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
        chosen = _session_to_reopen(store, settings, chosen, latest=latest)
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


def _history_provider(settings: Callable[[], Settings], *, session_id: str | None,
                      latest: bool = False) -> Callable[[], Sequence[Any]]:
    """Reads the recorded events of the session being resumed, without the SDK, to show them at once.

    Read-only: no lock is taken and nothing is repaired; the engine's start does that (and reports problems).
    """
    def read() -> Sequence[Any]:
        from core.session_log import SessionStore

        loaded = settings()
        store = SessionStore(loaded.state_dir)
        chosen = _session_to_reopen(store, loaded, session_id, latest=latest)
        return store.open(chosen).read_events() if chosen else []

    return read


def _sessions_provider(settings: Settings) -> Callable[[], Sequence[Any]]:
    def list_sessions() -> Sequence[Any]:
        from core.session_log import SessionStore

        return SessionStore(settings.state_dir).list(settings.workspace)

    return list_sessions


def build_app(args: argparse.Namespace, settings: SettingsLoader) -> DevAgentApp:
    """The app for these arguments; the settings are read when the engine starts or the picker lists sessions.

    A bad setting makes the app exit with code 2 right after its first frame (DevAgentApp.config_error).
    """
    from tui.app import DevAgentApp

    pick_first = args.resume == RESUME_PICKER
    factory = None if pick_first else _after_settings(
        settings, lambda loaded: _make_engine_factory(loaded, session_id=args.resume, latest=args.continue_))

    async def open_session(session_id: str) -> None:
        await app.open_engine(_after_settings(settings, lambda loaded: _make_engine_factory(
            loaded, session_id=session_id)), _history_provider(settings, session_id=session_id))

    def list_sessions() -> Sequence[Any]:
        return _sessions_provider(settings())()

    app = DevAgentApp(
        engine_factory=factory,
        initial_goal=args.goal,
        **first_frame_labels(args, os.environ),
        sessions_provider=list_sessions,
        on_open_session=open_session,
        open_session_picker=pick_first,
        watch_workspace=True,
        history_provider=None if pick_first or not (args.resume or args.continue_) else _history_provider(
            settings, session_id=args.resume, latest=args.continue_),
    )
    return app


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    _color_environment(os.environ)
    if args.warm_server:
        from tui.warm import serve

        if argv != ["--warm-server"]:
            build_parser().error("--warm-server takes no other argument (each agent-tui brings its own)")
        return serve(run_app)
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        print(NO_TTY_MESSAGE, file=sys.stderr)
        return 2
    from tui.warm import run_client

    code = run_client(argv, os.environ)
    return run_app(argv) if code is None else code


def run_app(argv: Sequence[str]) -> int:
    """The app in this process, on a terminal main() or the warm server checked: a cold start, or a child of the
    warm server (whose environment is the client's, adjusted here again)."""
    args = build_parser().parse_args(argv)
    _color_environment(os.environ)
    app = build_app(args, SettingsLoader(args))
    app.run()
    if app.config_error is not None:
        print(f"agent-tui: {app.config_error}", file=sys.stderr)
    return 0 if app.return_code is None else app.return_code


if __name__ == "__main__":
    sys.exit(main())
