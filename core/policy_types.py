"""Plain policy values shared by the loader (core.policy), the tools and the approval function."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

Verdict = Literal["allow", "ask", "deny"]
STRICTNESS: dict[str, int] = {"allow": 0, "ask": 1, "deny": 2}


def strictest(*verdicts: Verdict) -> Verdict:
    """Deny beats ask beats allow."""
    return max(verdicts, key=lambda v: STRICTNESS[v])


@lru_cache(maxsize=4096)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    """Translate a workspace glob: ``**`` spans directories, ``*`` and ``?`` stay inside one segment."""
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def glob_match(pattern: str, rel_path: str) -> bool:
    """Does a workspace-relative POSIX path match a policy glob (or lie under a matching directory)?

    A pattern without ``/`` (``.env*``) matches any single path component, at any depth, as in
    .gitignore; a pattern with ``/`` (``.git/**``, ``**/*.pem``) matches the whole relative path.
    A path also matches when one of its parent directories does, so ``.git`` covers ``.git/config``.
    """
    rel = rel_path.strip("/")
    if rel in ("", "."):
        return False
    pat = pattern.strip()
    if pat.startswith("./"):
        pat = pat[2:]
    pat = pat.rstrip("/") or pat
    parts = rel.split("/")
    if "/" not in pat:
        rx = _glob_regex(pat)
        return any(rx.match(part) for part in parts)
    pat = pat.lstrip("/")
    regexes = [_glob_regex(pat)]
    if pat.endswith("/**"):  # `dir/**` also covers `dir` itself
        regexes.append(_glob_regex(pat[:-3]))
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    return any(rx.match(prefix) for rx in regexes for prefix in prefixes)


@dataclass(frozen=True)
class PathRules:
    """paths.yaml: globs under the workspace that are read-only or hidden from the agent."""

    read_only: tuple[str, ...] = (".git/**",)
    hidden: tuple[str, ...] = (".env*", "**/*.pem")

    def is_hidden(self, rel_path: str) -> bool:
        return any(glob_match(p, rel_path) for p in self.hidden)

    def is_read_only(self, rel_path: str) -> bool:
        return self.is_hidden(rel_path) or any(glob_match(p, rel_path) for p in self.read_only)


@dataclass(frozen=True)
class CommandLimits:
    """Resource limits for run_command (tools.yaml `run_command.limits`)."""

    default_timeout_s: float = 120.0
    max_timeout_s: float = 1800.0
    memory_mb: int = 2048
    cpu_s: int = 600
    output_chars: int = 20_000
    max_processes: int | None = None


@dataclass(frozen=True)
class Budgets:
    """Per-run budgets (tools.yaml `budgets`); None means unlimited."""

    max_tool_calls: int | None = 200
    max_tokens: int | None = None


@dataclass(frozen=True)
class CommandRule:
    """One command rule of tools.yaml: a prefix of argv words and what to do with it."""

    prefix: tuple[str, ...]
    decision: Verdict
    reason: str = ""
    network: bool = False
    source: str = ""  # "tools.yaml:12", for messages
    match_examples: tuple[str, ...] = ()
    not_match_examples: tuple[str, ...] = ()

    def matches(self, argv: tuple[str, ...] | list[str]) -> bool:
        n = len(self.prefix)
        return n > 0 and tuple(argv[:n]) == self.prefix

    @property
    def text(self) -> str:
        return " ".join(self.prefix)


@dataclass(frozen=True)
class McpHostRules:
    allowed_hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class PolicySet:
    """A whole, validated policy: never half-loaded (built only after every file validated)."""

    tools: dict[str, Verdict] = field(default_factory=dict)
    command_rules: tuple[CommandRule, ...] = ()
    default_command: Verdict = "ask"
    shell_form: Verdict = "allow"
    paths: PathRules = field(default_factory=PathRules)
    limits: CommandLimits = field(default_factory=CommandLimits)
    budgets: Budgets = field(default_factory=Budgets)
    allow_net: bool = False
    allowed_hosts: tuple[str, ...] = ()
    source_dir: str = ""

    def tool_verdict(self, tool: str, default: Verdict = "ask") -> Verdict:
        return self.tools.get(tool, default)
