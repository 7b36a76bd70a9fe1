"""`agent`: the headless client (`agent run`) and the operator tools (sessions, policies, doctor)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from core.config import APPROVAL_MODES, Settings, load_settings
from core.errors import AgentError, ConfigError, EndpointError, PolicyError, SessionError

EXIT_DONE, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_PAUSED = 0, 1, 2, 3, 4


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workspace", help="the only tree the agent may read or write (default: current directory)")
    p.add_argument("--state-dir", help="where sessions, audit and checkpoints live")
    p.add_argument("--model", help="model id (default: the first the endpoint lists)")
    p.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://host.docker.internal:1234/v1")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agent", description="dev-agent: headless runs and operator tools.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run a goal to the end without the TUI")
    run.add_argument("goal", nargs="?", help="what to do (omit with --resume to continue)")
    run.add_argument("--approval", choices=APPROVAL_MODES, help="approval mode for this run")
    run.add_argument("--json", action="store_true", help="print one JSON event per line")
    run.add_argument("--resume", metavar="ID", help="continue this session (id or unique prefix)")
    decision = run.add_mutually_exclusive_group()
    decision.add_argument("--approve", action="store_true", help="approve the pending call(s) of --resume")
    decision.add_argument("--reject", nargs="?", const="", metavar="REASON",
                          help="reject the pending call(s) of --resume, with a reason sent to the model")
    _add_common(run)

    sessions = sub.add_parser("sessions", help="list, show, export, fork or repair sessions")
    ssub = sessions.add_subparsers(dest="sessions_command", metavar="ACTION")
    ls = ssub.add_parser("list", help="sessions of this workspace (--all: every workspace)")
    ls.add_argument("--json", action="store_true")
    ls.add_argument("--all", action="store_true")
    show = ssub.add_parser("show", help="a session's details and transcript")
    show.add_argument("id")
    export = ssub.add_parser("export", help="a session as Markdown or JSONL")
    export.add_argument("id")
    export.add_argument("--format", choices=("md", "jsonl"), default="md")
    fork = ssub.add_parser("fork", help="copy a session up to an event into a new session")
    fork.add_argument("id")
    fork.add_argument("--at", type=int, metavar="SEQ", help="last event to keep (default: all)")
    repair = ssub.add_parser("repair", help="rebuild meta and index from the event logs")
    repair.add_argument("id", nargs="?")
    for p in (ls, show, export, fork, repair):
        _add_common(p)

    policies = sub.add_parser("policies", help="validate, show or reload the policies")
    psub = policies.add_subparsers(dest="policies_command", metavar="ACTION")
    validate = psub.add_parser("validate", help="check policy files (default: the configured directory)")
    validate.add_argument("dir", nargs="?")
    pshow = psub.add_parser("show", help="print the policy in force")
    reload_ = psub.add_parser("reload", help="make running agents reload their policies (SIGHUP)")
    for p in (validate, pshow, reload_):
        _add_common(p)

    mcp = sub.add_parser("mcp", help="MCP servers: health (`agent mcp` alone explains the configuration)")
    msub = mcp.add_subparsers(dest="mcp_command", metavar="ACTION")
    health = msub.add_parser("health", help="per server: reachability, latency, tool count, last error")
    health.add_argument("--json", action="store_true")
    _add_common(health)

    doctor = sub.add_parser("doctor", help="check endpoint, model, context window, permissions, policies")
    doctor.add_argument("--quick", action="store_true", help="skip the endpoint (for container health checks)")
    doctor.add_argument("--json", action="store_true")
    _add_common(doctor)
    return parser


def _settings(args: argparse.Namespace, **extra: Any) -> Settings:
    overrides = {
        "workspace": getattr(args, "workspace", None),
        "state_dir": getattr(args, "state_dir", None),
        "model": getattr(args, "model", None),
        "base_url": getattr(args, "base_url", None),
        **extra,
    }
    return load_settings(os.environ, overrides)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    try:
        if args.command == "run":
            return asyncio.run(_run(args))
        if args.command == "sessions":
            return _sessions(args, parser)
        if args.command == "policies":
            return _policies(args, parser)
        if args.command == "doctor":
            return asyncio.run(_doctor(args))
        if args.command == "mcp":
            # Imported here, not at parser build: `agent --help` must not pay for the SDK import.
            from core.mcp import mcp_health_report, mcp_help_text

            if args.mcp_command != "health":
                print(mcp_help_text())
                return EXIT_USAGE
            code, out = asyncio.run(mcp_health_report(_settings(args), as_json=args.json))
            print(out)
            return code
    except (ConfigError, PolicyError) as exc:
        print(f"agent: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except EndpointError as exc:
        print(f"agent: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE if exc.kind in ("unreachable", "timeout") else EXIT_FAILED
    except SessionError as exc:
        print(f"agent: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except AgentError as exc:
        print(f"agent: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `agent ... | head`: the reader left; that is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_DONE
    parser.print_help()
    return EXIT_USAGE


# --------------------------------------------------------------------------- agent run


class ProgressPrinter:
    """Readable live progress for a terminal (or a log file when piped)."""

    def __init__(self, out: TextIO, *, live: bool) -> None:
        self.out = out
        self.live = live
        self._open_message: str | None = None

    def _line(self, text: str) -> None:
        self._end_stream()
        print(text, file=self.out, flush=True)

    def _end_stream(self) -> None:
        if self._open_message is not None:
            print(file=self.out, flush=True)
            self._open_message = None

    def __call__(self, ev: Any) -> None:
        t = ev.type
        if t == "session_started":
            self._line(f"session {ev.session_id}  workspace {ev.workspace}  model {ev.model}  "
                       f"approval {ev.approval_mode}")
        elif t == "session_resumed":
            self._line("resumed")
        elif t == "user_message":
            self._line(f"> {ev.text}")
        elif t == "agent_changed" and ev.role != "executor":
            self._line(f"-- {ev.role}" + (f" (round {ev.round + 1})" if ev.round else ""))
        elif t == "assistant_delta" and self.live:
            if self._open_message != ev.message_id:
                self._end_stream()
                self._open_message = ev.message_id
            print(ev.text, end="", file=self.out, flush=True)
        elif t == "assistant_message":
            if self.live and self._open_message == ev.message_id:
                self._open_message = None
                print(file=self.out, flush=True)
            elif ev.text.strip():
                self._line(ev.text)
        elif t == "plan_updated":
            from tools.plan import render_plan_text

            self._line("plan:\n" + render_plan_text(ev.steps))
        elif t == "tool_call_requested":
            args = _short_args(ev.arguments)
            flag = {"ask": "  [needs approval]", "deny": f"  [refused: {ev.reason}]"}.get(ev.decision, "")
            self._line(f"* {ev.tool} {args}{flag}")
        elif t == "tool_call_finished":
            mark = {"ok": "ok", "failed": "FAILED", "refused": "REFUSED", "rejected": "REJECTED"}[ev.status]
            first = ev.output_preview.strip().splitlines()[0][:120] if ev.output_preview.strip() else ""
            self._line(f"  {mark} {ev.tool} ({ev.duration_ms:.0f} ms) {first}")
        elif t == "approval_requested":
            self._line(f"? approval needed: {ev.tool} {ev.summary}\n  why: {ev.reason}")
            if ev.diff:
                self._line("\n".join("    " + ln for ln in ev.diff.splitlines()[:60]))
        elif t == "approval_decided":
            self._line(f"  decision: {ev.decision}" + (f" ({ev.reason})" if ev.reason else ""))
        elif t == "file_changed" and ev.source != "agent":
            self._line(f"  file {ev.change} ({ev.source}): {ev.path}")
        elif t == "checkpoint_restored":
            self._line(f"{ev.action}: restored {', '.join(ev.files) or 'no files'}")
        elif t == "review_finished":
            self._line(f"review: {'approved' if ev.ok else 'changes needed'}" +
                       (f": {ev.findings[:300]}" if ev.findings else ""))
        elif t == "notice":
            self._line(f"note: {ev.message}")
        elif t == "error":
            self._line(f"error: {ev.message}" + (f"\n  fix: {ev.hint}" if ev.hint else ""))
        elif t == "run_finished":
            self._line(f"run {ev.status}" + (f": {ev.summary.splitlines()[0][:200]}" if ev.summary and
                                             ev.status != "done" else ""))


def _short_args(raw: str) -> str:
    try:
        args = json.loads(raw or "{}")
    except json.JSONDecodeError:
        return raw[:80]
    if not isinstance(args, dict):
        return raw[:80]
    for key in ("command", "path", "pattern"):
        if key in args:
            return str(args[key])[:100]
    return ", ".join(f"{k}={str(v)[:30]}" for k, v in args.items())[:100]


async def _run(args: argparse.Namespace) -> int:
    from core.engine import Engine  # heavy imports only for commands that run the model
    from core.session_log import SessionStore

    if not args.goal and not args.resume:
        raise SessionError("give a GOAL, or --resume ID to continue a session")
    if (args.approve or args.reject is not None) and not args.resume:
        raise SessionError("--approve/--reject decide a paused session: use them with --resume ID")
    settings = _settings(args, approval=args.approval)
    store = SessionStore(settings.state_dir)
    if args.resume:
        session = store.open(args.resume)
        if Path(session.meta.workspace or settings.workspace).resolve() != settings.workspace and not args.workspace:
            settings = _settings(args, approval=args.approval, workspace=session.meta.workspace)
    else:
        session = store.create(workspace=settings.workspace, model=settings.model, base_url=settings.base_url,
                               approval_mode=settings.approval, client="cli")
    session.acquire()
    engine = Engine(settings, session, client="cli")
    out = sys.stdout
    interactive = sys.stdin.isatty() and not args.json
    printer = ProgressPrinter(out, live=out.isatty()) if not args.json else None
    finished: asyncio.Queue[Any] = asyncio.Queue()

    def on_event(ev: Any) -> None:
        if args.json:
            print(ev.to_json(), file=out, flush=True)
        elif printer:
            printer(ev)
        if ev.type == "run_finished":
            finished.put_nowait(ev)

    engine.subscribe(on_event)
    try:
        await engine.start()
        if args.approval and args.resume:
            engine.set_approval_mode(args.approval)
        if args.resume and engine.pending_approvals:
            if args.approve or args.reject is not None:
                for request in list(engine.pending_approvals):
                    if args.approve:
                        await engine.approve(request.call_id)
                    else:
                        await engine.reject(request.call_id, args.reject or "")
            elif args.goal:
                raise SessionError(f"session {session.id} is waiting for approval: resume it with --approve or "
                                   "--reject first")
        elif args.goal:
            await engine.submit(args.goal)
        elif args.resume and not engine.busy:
            last = next((e for e in reversed(engine.history) if e.type == "run_finished"), None)
            if last is not None and last.status in ("interrupted", "max_turns", "failed"):
                await engine.submit("Continue the task where you left off.")
            else:
                print(f"session {session.id} has nothing pending; give a GOAL to continue it", file=sys.stderr)
                return EXIT_DONE
        return await _follow(engine, finished, interactive=interactive, session_id=session.id)
    finally:
        await engine.close()
        session.release()


async def _follow(engine: Any, finished: asyncio.Queue[Any], *, interactive: bool, session_id: str) -> int:
    while True:
        if not engine.busy and finished.empty() and not engine.pending_approvals:
            last = next((e for e in reversed(engine.history) if e.type == "run_finished"), None)
            return _exit_for(last.status if last else "done")
        ev = await finished.get()
        if ev.status != "paused":
            if engine.busy:
                continue
            return _exit_for(ev.status)
        if not engine.pending_approvals:
            continue
        if not interactive:
            print(f"paused: waiting for approval. Continue with:\n  agent run --resume {session_id} --approve\n"
                  f"  agent run --resume {session_id} --reject 'reason'", file=sys.stderr)
            return EXIT_PAUSED
        for request in list(engine.pending_approvals):
            answer = await asyncio.to_thread(
                _ask, f"approve {request.tool} {request.summary}? [y]es / [a]lways / [n]o: ")
            choice = (answer or "n").strip().lower()
            if choice.startswith("y"):
                await engine.approve(request.call_id)
            elif choice.startswith("a"):
                await engine.approve(request.call_id, always=True)
            else:
                reason = await asyncio.to_thread(_ask, "reason for the model (enter for none): ")
                await engine.reject(request.call_id, (reason or "").strip())


def _ask(prompt: str) -> str | None:
    try:
        return input(prompt)
    except EOFError:
        return None


def _exit_for(status: str) -> int:
    return {"done": EXIT_DONE, "paused": EXIT_PAUSED}.get(status, EXIT_FAILED)


# --------------------------------------------------------------------------- sessions


def _sessions(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from core.session_log import SessionStore

    settings = _settings(args)
    store = SessionStore(settings.state_dir)
    cmd = args.sessions_command
    if cmd == "list":
        rows = store.list(settings.workspace)
        if not args.all:
            rows = [r for r in rows if not r.other_workspace]
        if args.json:
            for r in rows:
                print(json.dumps({"id": r.id, "title": r.title, "workspace": r.workspace, "model": r.model,
                                  "status": r.status, "updated": r.updated, "events": r.event_count,
                                  "other_workspace": r.other_workspace, "broken": r.broken,
                                  "problem": r.problem}))
            return EXIT_DONE
        if not rows:
            print("no sessions" + ("" if args.all else " in this workspace (--all shows every workspace)"))
            return EXIT_DONE
        for r in rows:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.updated)) if r.updated else "?"
            mark = " [other workspace: " + r.workspace + "]" if r.other_workspace else ""
            status = f"broken: {r.problem}" if r.broken else r.status
            print(f"{r.id}  {when}  {status:<12} {r.event_count:>6} ev  {(r.title or '(no goal yet)')[:60]}{mark}")
        return EXIT_DONE
    if cmd == "show":
        log = store.open(args.id)
        meta = log.meta
        print(f"id        {meta.id}\ntitle     {meta.title}\nworkspace {meta.workspace}\nmodel     {meta.model}\n"
              f"status    {meta.status}\nevents    {meta.event_count}\n")
        print(store.export(args.id, "md"))
        return EXIT_DONE
    if cmd == "export":
        sys.stdout.write(store.export(args.id, args.format))
        return EXIT_DONE
    if cmd == "fork":
        new = store.fork(args.id, args.at)
        print(f"forked into {new.id}")
        return EXIT_DONE
    if cmd == "repair":
        for line in store.repair(args.id):
            print(line)
        return EXIT_DONE
    parser.parse_args(["sessions", "--help"])
    return EXIT_USAGE


# --------------------------------------------------------------------------- policies


def _policies(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from core.policy import describe_policy, load_policies, validate_policy_dir

    cmd = args.policies_command
    if cmd == "validate":
        directory = Path(args.dir) if args.dir else _settings(args).policy_dir
        problems = validate_policy_dir(directory)
        if problems:
            for problem in problems:
                print(problem, file=sys.stderr)
            print(f"{len(problems)} problem(s) in {directory}", file=sys.stderr)
            return EXIT_USAGE
        print(f"policies in {directory} are valid")
        return EXIT_DONE
    if cmd == "show":
        settings = _settings(args)
        policy = load_policies(settings.policy_dir, allowed_commands=settings.allowed_commands,
                               allow_net=settings.allow_net)
        print(describe_policy(policy))
        return EXIT_DONE
    if cmd == "reload":
        from core.session_log import SessionStore, lock_holder

        settings = _settings(args)
        live = (lock_holder(s.path) for s in SessionStore(settings.state_dir).list() if s.live)
        pids = {p for p in live if p is not None and p != os.getpid()}
        for pid in pids:
            try:
                os.kill(pid, signal.SIGHUP)
            except OSError as exc:
                print(f"could not signal process {pid}: {exc.strerror}", file=sys.stderr)
        print(f"asked {len(pids)} running agent process(es) to reload their policies" if pids
              else "no running agent process found; new runs load the policies at start")
        return EXIT_DONE
    parser.parse_args(["policies", "--help"])
    return EXIT_USAGE


# --------------------------------------------------------------------------- doctor


async def _doctor(args: argparse.Namespace) -> int:
    from core.doctor import run_checks

    settings = _settings(args)
    checks = await run_checks(settings, quick=args.quick)
    if args.json:
        print(json.dumps([c.__dict__ for c in checks], indent=2))
    else:
        for c in checks:
            fix = "" if c.ok or not c.fix else f"\n     fix: {c.fix}"
            print(f"{'OK ' if c.ok else 'FIX'}  {c.name}: {c.detail}{fix}")
    failed = [c for c in checks if not c.ok]
    if any(c.name == "endpoint" for c in failed):
        return EXIT_UNREACHABLE
    return EXIT_FAILED if failed else EXIT_DONE


if __name__ == "__main__":
    raise SystemExit(main())
