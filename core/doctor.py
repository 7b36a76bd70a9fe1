"""`agent doctor`: each check is OK or says the fix to apply."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from core.config import Settings
from core.errors import EndpointError, PolicyError


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def _writable(path: Path) -> str | None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".doctor-", delete=True):
            pass
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def _warm_start() -> Check:
    """Whether agent-tui's warm server runs (information only: agent-tui starts cold without it)."""
    from core.warmstart import code_stamp, ping, socket_path

    path = socket_path(os.environ)
    answer = ping(path)
    if answer is None:
        detail = (f"no warm server on {path}: agent-tui starts cold (the container's command is "
                  "`agent-tui --warm-server`; `docker logs` says why it is not up)")
    elif answer.get("stamp") != code_stamp():
        detail = f"server {answer['server']} runs older code: it restarts itself at the next agent-tui"
    else:
        detail = f"server {answer['server']} ready on {path}: agent-tui starts in a fraction of a cold start"
    return Check("warm start", True, detail)


async def run_checks(settings: Settings, *, quick: bool = False) -> list[Check]:
    checks: list[Check] = []
    ws = settings.workspace
    readable = os.access(ws, os.R_OK | os.X_OK)
    ws_writable = os.access(ws, os.W_OK)
    access = "read/write" if readable and ws_writable else "not writable" if readable else "not readable"
    checks.append(Check("workspace", readable and ws_writable, f"{ws} ({access})",
                        "mount the project read-write and run as its owner (container: build with --build-arg "
                        "UID=$(id -u))"))
    problem = _writable(settings.state_dir)
    checks.append(Check("state dir", problem is None, f"{settings.state_dir}" + (f" ({problem})" if problem else
                                                                                 " (writable)"),
                        "make AGENT_STATE_DIR a writable directory (container: the /state volume)"))
    try:
        from core.policy import load_policies

        policy = load_policies(settings.policy_dir, allowed_commands=settings.allowed_commands,
                               allow_net=settings.allow_net)
        checks.append(Check("policies", True, f"{settings.policy_dir}: {len(policy.command_rules)} command rules, "
                                              f"network {'on' if policy.allow_net else 'off'}"))
    except PolicyError as exc:
        checks.append(Check("policies", False, exc.message, "fix the file and line named, then "
                                                            "`agent policies validate`"))
    checks.append(_warm_start())
    if quick:
        return checks
    from core.model import discover

    try:
        info = await discover(settings)
    except EndpointError as exc:
        checks.append(Check("endpoint", False, f"{settings.base_url}: {exc.message}", exc.hint))
        return checks
    checks.append(Check("endpoint", True, f"{settings.base_url} answered in {info.latency_ms:.0f} ms "
                                          f"({info.server}, {len(info.models)} model(s))"))
    model_ok = info.model is not None and (not settings.model or settings.model in info.models)
    checks.append(Check("model", model_ok, f"{info.model}" + ("" if model_ok else
                                                             f" (listed: {', '.join(info.models[:8])})"),
                        "set AGENT_MODEL to one of the listed ids"))
    if info.context_window is None:
        checks.append(Check("context window", True, "not reported by this server (LM Studio and llama.cpp report "
                                                    "it); make sure it is at least 16k tokens"))
    else:
        from core.model import MIN_CONTEXT_FOR_AGENT

        big = info.context_window >= MIN_CONTEXT_FOR_AGENT
        checks.append(Check("context window", big, f"{info.context_window} tokens" + ("" if big else " (too small)"),
                            next((w for w in info.warnings if "context window" in w), "")))
    for warning in info.warnings:
        if "context window" not in warning:
            checks.append(Check("note", True, warning))
    return checks
