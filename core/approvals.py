"""The approval decision: policy + approval mode + session rules -> allow, ask or deny for one tool call."""

from __future__ import annotations

import os
import posixpath
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from core.commands import RESERVED_WORDS, CommandParseError, CommandPart, normalized_argv, parse_command
from core.config import ApprovalMode
from core.policy import LOCAL_TOOLS
from core.policy_types import CommandRule, PolicySet, Verdict, glob_match, strictest

DecisionKind = Literal["read", "write", "command", "mcp", "plan", "other"]
READ_TOOLS: frozenset[str] = frozenset({"read_file", "list_dir", "search_files", "git_status", "git_diff"})
WRITE_TOOLS: frozenset[str] = frozenset({"write_file", "edit_file"})
# Defaults for tools a tools.yaml does not list.
_DEFAULT_VERDICTS: dict[str, Verdict] = {"update_plan": "allow", "write_file": "ask", "edit_file": "ask",
                                         "run_command": "ask", **dict.fromkeys(READ_TOOLS, "allow")}
# Writing to these is not writing a file.
_DEVICE_TARGETS = frozenset({"/dev/null", "/dev/stdout", "/dev/stderr", "/dev/tty"})
# Words whose value only the shell knows: expansions, globs (`[` alone is the test command), `~`.
# Brace expansion ({sudo,} ls, {a..z}) also makes words only the shell knows.
_DYNAMIC = re.compile(r"[$`*?]|\[[^\]]*\]|^~|^[<>]\(|\{[^}]*(,|\.\.)[^}]*\}")
_SUBCOMMAND = re.compile(r"[A-Za-z][A-Za-z0-9_:-]*")
# Variables that decide which program runs or what it runs besides its job (git's fsmonitor, pagers, preloads).
_RISKY_VARIABLE = re.compile(r"(PATH|LD_\w+|BASH_ENV|ENV|GIT_\w+|PAGER|MANPAGER|EDITOR|VISUAL|PYTHONPATH|"
                             r"PYTHONSTARTUP|NODE_OPTIONS|PERL5OPT|PERL5LIB|RUBYOPT|SHELLOPTS|BASHOPTS|IFS|"
                             r"PROMPT_COMMAND)\+?=")
_DECLARATIONS = frozenset({"export", "declare", "typeset", "readonly", "local"})
# git options that run configured commands (core.fsmonitor, core.pager, alias.x=!cmd) whatever the subcommand.
_GIT_CONFIG_OPTIONS = re.compile(r"-c|--config-env(=.*)?|--exec-path(=.*)?")
# Shell words that can only name a program here if dev-agent lost track of the syntax.
_NOT_A_PROGRAM = RESERVED_WORDS - {"for", "select", "case", "[[", "]]"}


@dataclass(frozen=True)
class AlwaysAllowRule:
    """A rule added for the rest of a session by approving with `a`: a command prefix, a path glob or a tool."""

    kind: Literal["command", "path", "tool"]
    pattern: str

    def describe(self) -> str:
        if self.kind == "command":
            return f"always allow commands starting with '{self.pattern}'"
        if self.kind == "path":
            return f"always allow writes to '{self.pattern}'"
        return f"always allow the tool '{self.pattern}'"

    def matches_command(self, argv: Sequence[str]) -> bool:
        """Word prefix match on the normalised argv: 'npm test' covers `npm test -- --watch`, not `npm testx`."""
        words = tuple(self.pattern.split())
        return self.kind == "command" and bool(words) and normalized_argv(tuple(argv))[:len(words)] == words

    def matches_path(self, rel_path: str) -> bool:
        return self.kind == "path" and glob_match(self.pattern, rel_path)

    def matches_tool(self, tool: str) -> bool:
        return self.kind == "tool" and fnmatchcase(tool, self.pattern)

    def to_text(self) -> str:
        """The form the session log keeps (`approval_decided.rule`): `kind:pattern`."""
        return f"{self.kind}:{self.pattern}"

    @classmethod
    def from_text(cls, text: str) -> AlwaysAllowRule:
        kind, sep, pattern = text.partition(":")
        if not sep or kind not in ("command", "path", "tool") or not pattern.strip():
            raise ValueError(f"not an always-allow rule: {text!r} (expected command:, path: or tool: and a pattern)")
        return cls(kind, pattern.strip())  # type: ignore[arg-type]

    @classmethod
    def join(cls, rules: Sequence[AlwaysAllowRule]) -> str | None:
        """Several rules in one log field, or None for none."""
        return ";".join(rule.to_text() for rule in rules) or None

    @classmethod
    def split(cls, text: str) -> list[AlwaysAllowRule]:
        """The rules of a log field written by `join`; a part that is not a rule is skipped."""
        rules = []
        for part in text.split(";"):
            try:
                rules.append(cls.from_text(part))
            except ValueError:
                continue
        return rules


@dataclass(frozen=True)
class PartDecision:
    """The verdict on one part of a command: a simple command, an output file, or the use of a shell."""

    text: str
    verdict: Verdict
    reason: str
    source: str = ""  # the rule's `tools.yaml:31`, `paths.yaml`, or "" for mode and session decisions
    suggested_rule: AlwaysAllowRule | None = None


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str
    kind: DecisionKind
    suggested_rules: tuple[AlwaysAllowRule, ...] = ()
    parts: tuple[PartDecision, ...] = ()


def decide(tool: str, args: dict[str, Any], policy: PolicySet, mode: ApprovalMode,
           session_rules: Sequence[AlwaysAllowRule] = (), workspace_root: Path | None = None) -> Decision:
    """Judge one tool call. Pure: reads nothing but the workspace's symlinks (to find where a path leads)."""
    args = args if isinstance(args, dict) else {}
    root = os.path.realpath(workspace_root) if workspace_root is not None else None
    if tool == "run_command":
        return _decide_command(args, policy, mode, session_rules, root)
    if tool in WRITE_TOOLS:
        return _decide_write(tool, args, policy, mode, session_rules, root)
    if tool in READ_TOOLS or tool == "update_plan":
        return _decide_read(tool, args, policy, session_rules, root)
    if "__" in tool:
        verdict = policy.tools.get(tool) or policy.tools.get("mcp", "ask")
        source = f"tools.yaml '{tool}'" if tool in policy.tools else "tools.yaml 'mcp'"
        if verdict == "ask" and any(r.matches_tool(tool) for r in session_rules):
            return Decision("allow", f"MCP tool '{tool}' is allowed by a session rule", "mcp")
        return Decision(verdict, f"MCP tool '{tool}': {verdict} ({source})", "mcp",
                        (AlwaysAllowRule("tool", tool),) if verdict == "ask" else ())
    known = ", ".join(sorted(LOCAL_TOOLS))
    return Decision("deny", f"unknown tool '{tool}': the tools are {known}", "other")


def _tool_verdict(policy: PolicySet, tool: str) -> Verdict:
    return policy.tool_verdict(tool, _DEFAULT_VERDICTS.get(tool, "ask"))


def _locate(path: str, root: str | None) -> tuple[str, ...] | None:
    """The workspace-relative forms of a path (as written, and after symlinks), or None when it leads outside."""
    if not path or "\x00" in path:
        return None
    literal = posixpath.normpath(path.replace(os.sep, "/"))
    if root is None:
        if posixpath.isabs(literal) or literal == ".." or literal.startswith("../"):
            return None
        return (literal,)
    full = os.path.realpath(os.path.join(root, path))
    if full != root and not full.startswith(root.rstrip(os.sep) + os.sep):
        return None
    real = Path(os.path.relpath(full, root)).as_posix()
    if posixpath.isabs(literal):
        literal = Path(os.path.relpath(os.path.normpath(literal), root)).as_posix()
    return tuple(dict.fromkeys(p for p in (literal, real) if not p.startswith("..")))


@lru_cache(maxsize=4096)
def _first_glob(patterns: tuple[str, ...], rel: str) -> str | None:
    # Every argument of every command is checked against the hidden globs: the same words recur.
    return next((p for p in patterns if glob_match(p, rel)), None)


def _path_refusal(path: str, rels: tuple[str, ...], policy: PolicySet, *, write: bool) -> str | None:
    """Why paths.yaml forbids this path (hidden, or read-only for a write), or None."""
    for rel in rels:
        pattern = _first_glob(policy.paths.hidden, rel)
        if pattern:
            return (f"'{path}' is hidden by paths.yaml ('{pattern}'): the agent may not read or write it; "
                    f"work without it")
        if write:
            pattern = _first_glob(policy.paths.read_only, rel)
            if pattern:
                return f"'{path}' is read-only by paths.yaml ('{pattern}'): change other files instead"
    return None


def _decide_read(tool: str, args: dict[str, Any], policy: PolicySet, session_rules: Sequence[AlwaysAllowRule],
                 root: str | None) -> Decision:
    kind: DecisionKind = "plan" if tool == "update_plan" else "read"
    verdict = _tool_verdict(policy, tool)
    if verdict == "deny":
        return Decision("deny", f"{tool} is denied by tools.yaml", kind)
    path = args.get("path")
    if isinstance(path, str) and path not in ("", "."):
        rels = _locate(path, root)
        if rels is None:
            return Decision("deny", f"'{path}' is outside the workspace: use a path relative to the workspace "
                                    f"root", kind)
        refusal = _path_refusal(path, rels, policy, write=False)
        if refusal:
            return Decision("deny", refusal, kind)
    if verdict == "ask":
        if any(r.matches_tool(tool) for r in session_rules):
            return Decision("allow", f"{tool} is allowed by a session rule", kind)
        return Decision("ask", f"{tool} needs approval (tools.yaml)", kind, (AlwaysAllowRule("tool", tool),))
    return Decision("allow", f"{tool} is allowed (tools.yaml)", kind)


def _suggest_path(rel: str) -> AlwaysAllowRule:
    parent = posixpath.dirname(rel)
    return AlwaysAllowRule("path", f"{parent}/**" if parent else rel)


def _judge_write(path: str, policy: PolicySet, mode: ApprovalMode, session_rules: Sequence[AlwaysAllowRule],
                 root: str | None, what: str, tool: str) -> PartDecision:
    """A file write (write_file, edit_file, or a command's output redirection) under the approval mode."""
    rels = _locate(path, root)
    if rels is None:
        return PartDecision(what, "deny", f"{what} writes to '{path}', outside the workspace: write inside the "
                                          f"workspace instead", "workspace")
    refusal = _path_refusal(path, rels, policy, write=True)
    if refusal:
        return PartDecision(what, "deny", refusal, "paths.yaml")
    rel = rels[-1]
    verdict = _tool_verdict(policy, tool)
    if verdict == "deny":
        return PartDecision(what, "deny", f"{what}: writing files is denied by tools.yaml ({tool})", "tools.yaml")
    if verdict == "allow" or mode != "ask":
        why = "tools.yaml allows writes" if verdict == "allow" else f"approval mode {mode} applies writes"
        return PartDecision(what, "allow", f"{what} writes '{rel}' inside the workspace ({why})")
    rule = next((r for r in session_rules if r.matches_path(rel)), None)
    if rule:
        return PartDecision(what, "allow", f"{what} writes '{rel}': allowed by the session rule '{rule.describe()}'")
    return PartDecision(what, "ask", f"{what} writes '{rel}' (approval mode ask asks for every write)", "",
                        _suggest_path(rel))


def _decide_write(tool: str, args: dict[str, Any], policy: PolicySet, mode: ApprovalMode,
                  session_rules: Sequence[AlwaysAllowRule], root: str | None) -> Decision:
    if _tool_verdict(policy, tool) == "deny":
        return Decision("deny", f"{tool} is denied by tools.yaml", "write")
    path = args.get("path")
    if not isinstance(path, str) or not path.strip():
        return Decision("deny", f"{tool} needs 'path': the file to write, relative to the workspace root", "write")
    part = _judge_write(path, policy, mode, session_rules, root, tool, tool)
    suggested = (part.suggested_rule,) if part.suggested_rule and part.verdict == "ask" else ()
    return Decision(part.verdict, part.reason, "write", suggested, (part,))


def _suggest_command(argv: tuple[str, ...]) -> AlwaysAllowRule:
    """A prefix rule for an asked part: `npm test`, `git push`, `make build`, `python -m X`, else the program."""
    if argv[0].startswith("python") and len(argv) >= 3 and argv[1] == "-m":
        return AlwaysAllowRule("command", " ".join(argv[:3]))
    if len(argv) > 1 and _SUBCOMMAND.fullmatch(argv[1]):
        return AlwaysAllowRule("command", f"{argv[0]} {argv[1]}")
    return AlwaysAllowRule("command", argv[0])


def _rule_reason(text: str, rule: CommandRule) -> str:
    why = f": {rule.reason}" if rule.reason else ""
    if rule.decision == "allow":
        return f"'{text}' is allowed by rule '{rule.text}' ({rule.source})"
    if rule.decision == "ask":
        return f"'{text}' needs approval: rule '{rule.text}' ({rule.source}){why}"
    return f"'{text}' is denied by rule '{rule.text}' ({rule.source}){why}"


def _guarded_word(words: Sequence[str], policy: PolicySet) -> str | None:
    """The first argument that names a program a deny, ask or network rule starts with, if any."""
    guarded = {r.prefix[0] for r in policy.command_rules if r.decision != "allow" or r.network}
    for word in words:
        for token in word.split():  # `script -qc 'sudo rm -rf /'`: the command hides inside one argument
            name = posixpath.basename(token)
            if name in guarded:
                return name
    return None


def _judge_part(part: CommandPart, policy: PolicySet, mode: ApprovalMode, session_rules: Sequence[AlwaysAllowRule],
                root: str | None) -> PartDecision:
    argv = normalized_argv(part.argv)
    text = part.raw or shlex.join(part.argv)
    if not argv[0] or _DYNAMIC.search(part.argv[0]):
        # The shell decides what runs ($CMD, $(echo rm), r*): no rule can vouch for it, in any mode.
        return PartDecision(text, "ask", f"'{text}': the program '{part.argv[0]}' is only known when the shell "
                                         f"runs it, so it needs approval in every mode")
    if argv[0] in _NOT_A_PROGRAM or argv[0].startswith("-"):
        return PartDecision(text, "ask", f"'{text}': '{argv[0]}' is shell syntax in a place dev-agent cannot "
                                         f"follow, so it needs approval in every mode")
    for word in part.argv[1:]:
        if word.startswith("-") or _DYNAMIC.search(word):
            continue
        rels = _locate(word, root)
        refusal = _path_refusal(word, rels, policy, write=False) if rels else None
        if refusal:
            return PartDecision(text, "deny", f"'{text}' names a hidden path: {refusal}", "paths.yaml")
    if argv[0] == "git" and any(_GIT_CONFIG_OPTIONS.fullmatch(w) for w in part.argv[1:len(part.argv) - len(argv) + 1]):
        return PartDecision(text, "ask", f"'{text}': git -c/--config-env/--exec-path can make any git command run "
                                         f"other programs, so it needs approval in every mode")
    matched = [r for r in policy.command_rules if r.prefix[0] == argv[0] and r.matches(argv)]
    for rule in matched:
        if rule.network and not policy.allow_net:
            return PartDecision(text, "deny", f"'{rule.text}' uses the network and network access is off "
                                              f"(ALLOW_NET=false); rule at {rule.source}", rule.source)
    suggestion = _suggest_command(argv)
    if matched:
        verdict = strictest(*(r.decision for r in matched))
        rule = max((r for r in matched if r.decision == verdict), key=lambda r: len(r.prefix))
        decision = PartDecision(text, verdict, _rule_reason(text, rule), rule.source, suggestion)
    elif policy.default_command == "ask" and mode == "full-auto":
        guarded = _guarded_word(part.argv[1:], policy)
        if guarded is not None:
            # An unknown program whose arguments name a guarded one (`setsid sudo ...`, `strace -f curl ...`)
            # may well run it: full-auto must not wave it through.
            decision = PartDecision(text, "ask", f"'{text}' matches no rule but runs '{guarded}', which a rule "
                                                 f"guards, so it needs approval", "", suggestion)
        else:
            decision = PartDecision(text, "allow", f"'{text}' matches no rule; full-auto runs it")
    else:
        verdict = policy.default_command
        decision = PartDecision(text, verdict, f"'{text}' matches no rule, so run_command.default applies "
                                               f"({verdict})", "tools.yaml run_command.default", suggestion)
    if decision.verdict == "allow" and argv[0] in ("cd", "pushd"):
        target = argv[1] if len(argv) > 1 else ""
        if not target or target == "-" or _DYNAMIC.search(target) or _locate(target, root) is None:
            # Relative output paths after `cd /elsewhere` would escape the workspace check.
            return PartDecision(text, "ask", f"'{text}' may leave the workspace, so it needs approval in every mode")
    if decision.verdict == "ask":
        rule = next((r for r in session_rules if r.matches_command(part.argv)), None)
        if rule:
            return PartDecision(text, "allow", f"'{text}' is allowed by the session rule '{rule.describe()}'")
    return decision


def _decide_command(args: dict[str, Any], policy: PolicySet, mode: ApprovalMode,
                    session_rules: Sequence[AlwaysAllowRule], root: str | None) -> Decision:
    if _tool_verdict(policy, "run_command") == "deny":
        return Decision("deny", "run_command is denied by tools.yaml: no command may run", "command")
    command = args.get("command")
    if not isinstance(command, str):
        return Decision("deny", "run_command needs 'command': the command line to run, as a string", "command")
    try:
        parsed = parse_command(command)
    except CommandParseError as exc:
        return Decision("deny", exc.message, "command")
    judged: list[PartDecision] = []
    for part in parsed.parts:
        text = part.raw or shlex.join(part.argv)
        assigned = part.assignments + (part.argv[1:] if part.name in _DECLARATIONS else ())
        risky = next((a for a in assigned if _RISKY_VARIABLE.match(a)), None)
        if risky:
            judged.append(PartDecision(text, "ask", f"'{text}' sets {risky.split('=')[0].rstrip('+')}, which changes "
                                                    f"what programs run, so it needs approval in every mode"))
        if part.argv:
            judged.append(_judge_part(part, policy, mode, session_rules, root))
        for target in part.write_targets:
            normalized = posixpath.normpath(target) if target.startswith("/") else target
            if normalized in _DEVICE_TARGETS or re.fullmatch(r"/dev/fd/\d+", normalized) or target.startswith(">("):
                continue
            if _DYNAMIC.search(target):
                judged.append(PartDecision(text, "deny", f"'{text}' writes to '{target}', which is only known when "
                                                         f"the shell runs: write to a plain path in the workspace"))
                continue
            judged.append(_judge_write(target, policy, mode, session_rules, root, f"'{text}'", "write_file"))
        for target in part.read_targets:
            rels = _locate(target, root)
            refusal = _path_refusal(target, rels, policy, write=False) if rels else None
            if refusal:
                judged.append(PartDecision(text, "deny", f"'{text}' reads a hidden path: {refusal}", "paths.yaml"))
    if parsed.needs_shell and policy.shell_form != "allow":
        judged.append(PartDecision(command, policy.shell_form,
                                   f"this command needs a shell (operators, redirections, substitutions or "
                                   f"variables) and run_command.shell_form is {policy.shell_form}"
                                   + (": run one plain command instead" if policy.shell_form == "deny" else ""),
                                   "tools.yaml run_command.shell_form"))
    verdict = strictest(*(j.verdict for j in judged)) if judged else "allow"
    deciding = [j for j in judged if j.verdict == verdict]
    if verdict == "allow":
        reason = "; ".join(j.reason for j in judged) or "nothing to run"
    else:
        others = f" (and {len(deciding) - 1} more part(s))" if len(deciding) > 1 else ""
        reason = deciding[0].reason + others
    suggested: tuple[AlwaysAllowRule, ...] = ()
    if verdict == "ask":
        suggested = tuple(dict.fromkeys(j.suggested_rule for j in judged if j.verdict == "ask" and j.suggested_rule))
    return Decision(verdict, reason, "command", suggested, tuple(judged))
