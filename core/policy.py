"""Policy loader: validates tools.yaml, paths.yaml and network.yaml into one PolicySet, with reload and budgets."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from core.commands import CommandParseError, normalized_argv, parse_command
from core.errors import PolicyError
from core.policy_types import Budgets, CommandLimits, CommandRule, PathRules, PolicySet, Verdict

VERDICTS: tuple[str, ...] = ("allow", "ask", "deny")
LOCAL_TOOLS: frozenset[str] = frozenset({
    "read_file", "list_dir", "search_files", "git_status", "git_diff", "update_plan",
    "write_file", "edit_file", "run_command",
})
POLICY_FILES: tuple[str, ...] = ("tools.yaml", "paths.yaml", "network.yaml")
ALLOWED_COMMANDS_SOURCE = "AGENT_ALLOWED_COMMANDS"

_SHELL_CHARS = frozenset(";&|()<>$`'\"\\*?[]{}~#")
_LIMIT_FIELDS = {"timeout_s": "default_timeout_s", "max_timeout_s": "max_timeout_s", "memory_mb": "memory_mb",
                 "cpu_s": "cpu_s", "output_chars": "output_chars", "max_processes": "max_processes"}


def rule_matches(rule: CommandRule, command: str) -> bool:
    """Does some part of the command line match the rule? (CommandParseError when it does not parse.)"""
    return any(rule.matches(normalized_argv(part.argv)) for part in parse_command(command).parts)


# libyaml's parser when PyYAML has it (its wheels do): policies load ~5x faster, with the same line marks.
# A file it refuses is parsed again by the pure-Python parser, whose messages the error report uses.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _File:
    """One policy file being read: its YAML nodes, and the problems found, each as `file:line: problem`."""

    def __init__(self, name: str, problems: list[str]) -> None:
        self.name = name
        self.problems = problems
        self.loader: yaml.SafeLoader | yaml.CSafeLoader | None = None

    def problem(self, node: yaml.Node | None, message: str) -> None:
        line = node.start_mark.line + 1 if node is not None else 1
        self.problems.append(f"{self.name}:{line}: {message}")

    def compose(self, text: str) -> yaml.Node | None:
        try:
            self.loader = _SafeLoader(text)
            return self.loader.get_single_node()
        except yaml.YAMLError:
            pass  # a broken file: PyYAML's own parser words the problem and its line better than libyaml's
        try:
            self.loader = yaml.SafeLoader(text)
            return self.loader.get_single_node()
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
            line = mark.line + 1 if mark is not None else 1
            what = getattr(exc, "problem", None) or str(exc)
            self.problems.append(f"{self.name}:{line}: not valid YAML ({what})")
            return None

    def value(self, node: yaml.Node) -> Any:
        assert self.loader is not None
        return self.loader.construct_object(node, deep=True)

    def mapping(self, node: yaml.Node | None, where: str, keys: Sequence[str] | None
                ) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """key -> (key node, value node); reports non-mappings, duplicate keys and keys not in `keys`."""
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, f"{where} must be a mapping of names to values")
            return {}
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key = self.value(key_node)
            if not isinstance(key, str):
                self.problem(key_node, f"{where}: keys must be names (got {key!r})")
                continue
            if key in out:
                self.problem(key_node, f"{where}: '{key}' is given twice (first on line "
                                       f"{out[key][0].start_mark.line + 1})")
                continue
            if keys is not None and key not in keys:
                self.problem(key_node, f"unknown key '{key}' in {where} (expected: {', '.join(keys)})")
                continue
            out[key] = (key_node, value_node)
        return out

    def verdict(self, node: yaml.Node, what: str) -> Verdict | None:
        value = self.value(node)
        if value not in VERDICTS:
            self.problem(node, f"{what} must be allow, ask or deny (got {value!r})")
            return None
        return value

    def boolean(self, node: yaml.Node, what: str) -> bool | None:
        value = self.value(node)
        if not isinstance(value, bool):
            self.problem(node, f"{what} must be true or false (got {value!r})")
            return None
        return value

    def text(self, node: yaml.Node, what: str, *, allow_empty: bool = False) -> str | None:
        value = self.value(node)
        if not isinstance(value, str) or (not allow_empty and not value.strip()):
            self.problem(node, f"{what} must be a non-empty string (got {value!r})")
            return None
        return value

    def number(self, node: yaml.Node, what: str, *, integer: bool, nullable: bool = False) -> Any:
        value = self.value(node)
        if value is None and nullable:
            return None
        ok = isinstance(value, int) if integer else isinstance(value, int | float)
        if not ok or isinstance(value, bool) or value <= 0:
            kind = "a whole number" if integer else "a number"
            self.problem(node, f"{what} must be {kind} above 0{' or null' if nullable else ''} (got {value!r})")
            return None
        return value

    def strings(self, node: yaml.Node, what: str) -> list[tuple[yaml.Node, str]]:
        if not isinstance(node, yaml.SequenceNode):
            self.problem(node, f"{what} must be a list of strings")
            return []
        out = []
        for item in node.value:
            text = self.text(item, f"{what} entries")
            if text is not None:
                out.append((item, text))
        return out

    def version(self, entries: dict[str, tuple[yaml.Node, yaml.Node]]) -> None:
        if "version" in entries and self.value(entries["version"][1]) != 1:
            self.problem(entries["version"][1], f"version must be 1 (got {self.value(entries['version'][1])!r})")


def _read(policy_dir: Path, name: str, problems: list[str]) -> tuple[_File, dict[str, tuple[yaml.Node, yaml.Node]]]:
    file = _File(name, problems)
    path = policy_dir / name
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        problems.append(f"{name}: missing from {policy_dir} (every policy directory needs "
                        f"{', '.join(POLICY_FILES)})")
        return file, {}
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{name}: cannot read {path} ({exc})")
        return file, {}
    before = len(problems)
    node = file.compose(text)
    if node is None:
        if len(problems) == before:
            file.problem(None, "the file is empty: it must be a mapping (see the shipped policies/ for an example)")
        return file, {}
    return file, _top(file, node, name)


def _top(file: _File, node: yaml.Node, name: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    keys = {"tools.yaml": ("version", "tools", "run_command", "budgets"),
            "paths.yaml": ("version", "read_only", "hidden"),
            "network.yaml": ("version", "allow_net", "allowed_hosts")}[name]
    entries = file.mapping(node, name, keys)
    file.version(entries)
    return entries


def _load_tools(file: _File, entries: dict[str, tuple[yaml.Node, yaml.Node]], out: dict[str, Any]) -> None:
    if "tools" in entries:
        tools: dict[str, Verdict] = {}
        for tool, (key_node, value_node) in file.mapping(entries["tools"][1], "tools", None).items():
            if tool not in LOCAL_TOOLS and tool != "mcp" and "__" not in tool:
                file.problem(key_node, f"unknown tool '{tool}' (known: {', '.join(sorted(LOCAL_TOOLS))}, mcp, "
                                       f"or an MCP tool as server__tool)")
                continue
            verdict = file.verdict(value_node, f"tool '{tool}'")
            if verdict:
                tools[tool] = verdict
        out["tools"] = tools
    if "run_command" in entries:
        rc = file.mapping(entries["run_command"][1], "run_command", ("default", "shell_form", "limits", "rules"))
        if "default" in rc:
            out["default_command"] = file.verdict(rc["default"][1], "run_command.default") or "ask"
        if "shell_form" in rc:
            out["shell_form"] = file.verdict(rc["shell_form"][1], "run_command.shell_form") or "ask"
        if "limits" in rc:
            out["limits"] = _load_limits(file, rc["limits"][1])
        if "rules" in rc:
            out["command_rules"] = _load_rules(file, rc["rules"][1])
    if "budgets" in entries:
        b = file.mapping(entries["budgets"][1], "budgets", ("max_tool_calls", "max_tokens"))
        values = {key: file.number(node, f"budgets.{key}", integer=True, nullable=True)
                  for key, (_, node) in b.items()}
        out["budgets"] = Budgets(**values)


def _load_limits(file: _File, node: yaml.Node) -> CommandLimits:
    entries = file.mapping(node, "run_command.limits", tuple(_LIMIT_FIELDS))
    values: dict[str, Any] = {}
    for key, (_, value_node) in entries.items():
        value = file.number(value_node, f"run_command.limits.{key}", integer=key != "timeout_s" and
                            key != "max_timeout_s", nullable=key == "max_processes")
        if value is not None or key == "max_processes":
            values[_LIMIT_FIELDS[key]] = value
    limits = CommandLimits(**values)
    if limits.default_timeout_s > limits.max_timeout_s:
        file.problem(node, f"run_command.limits: timeout_s ({limits.default_timeout_s:g}) is above max_timeout_s "
                           f"({limits.max_timeout_s:g})")
    return limits


def _load_rules(file: _File, node: yaml.Node) -> tuple[CommandRule, ...]:
    if not isinstance(node, yaml.SequenceNode):
        file.problem(node, "run_command.rules must be a list of rules")
        return ()
    rules: list[CommandRule] = []
    seen: dict[tuple[str, ...], int] = {}
    for index, item in enumerate(node.value, 1):
        entries = file.mapping(item, f"rule #{index}", ("prefix", "decision", "reason", "network", "examples"))
        if not isinstance(item, yaml.MappingNode):
            continue
        if "prefix" not in entries:
            file.problem(item, f"rule #{index}: prefix is missing (e.g. prefix: git status)")
            continue
        prefix = _prefix(file, entries["prefix"][1], f"rule #{index}")
        if prefix is None:
            continue
        label = f"rule '{' '.join(prefix)}'"
        line = item.start_mark.line + 1
        if prefix in seen:
            file.problem(item, f"{label} is defined twice (first on line {seen[prefix]})")
            continue
        seen[prefix] = line
        if "decision" not in entries:
            file.problem(item, f"{label}: decision is missing (allow, ask or deny)")
            continue
        decision = file.verdict(entries["decision"][1], f"{label}: decision")
        reason = file.text(entries["reason"][1], f"{label}: reason", allow_empty=True) if "reason" in entries else ""
        network = file.boolean(entries["network"][1], f"{label}: network") if "network" in entries else False
        if decision is None or reason is None or network is None:
            continue
        rule = CommandRule(prefix=prefix, decision=decision, reason=reason, network=network,
                           source=f"{file.name}:{line}")
        if "examples" in entries:
            rule = _check_examples(file, entries["examples"][1], rule, label)
        rules.append(rule)
    return tuple(rules)


def _prefix(file: _File, node: yaml.Node, label: str) -> tuple[str, ...] | None:
    text = file.text(node, f"{label}: prefix")
    if text is None:
        return None
    problem = prefix_problem(text)
    if problem:
        file.problem(node, f"{label}: {problem}")
        return None
    return tuple(text.split())


def prefix_problem(text: str) -> str | None:
    """Why a rule prefix is not a plain list of command words, or None when it is."""
    words = text.split()
    if not words:
        return "prefix must not be empty"
    bad = next((c for c in text if c in _SHELL_CHARS), None)
    if bad:
        return f"prefix {text!r} must be plain command words (found {bad!r}): operators, quotes and " \
               f"expansions are matched part by part, not in a prefix"
    if "/" in words[0]:
        return f"prefix {text!r} must start with a program name, not a path (rules match /usr/bin/x as x)"
    return None


def _check_examples(file: _File, node: yaml.Node, rule: CommandRule, label: str) -> CommandRule:
    entries = file.mapping(node, f"{label}: examples", ("match", "not_match"))
    found: dict[str, list[str]] = {"match": [], "not_match": []}
    for key in ("match", "not_match"):
        if key not in entries:
            continue
        for item, example in file.strings(entries[key][1], f"{label}: examples.{key}"):
            try:
                hit = rule_matches(rule, example)
            except CommandParseError as exc:
                file.problem(item, f"{label}: example {example!r} does not parse ({exc.message})")
                continue
            if key == "match" and not hit:
                file.problem(item, f"{label}: example {example!r} should match the rule but no part of it does")
            elif key == "not_match" and hit:
                file.problem(item, f"{label}: example {example!r} should not match the rule but it does")
            found[key].append(example)
    return CommandRule(prefix=rule.prefix, decision=rule.decision, reason=rule.reason, network=rule.network,
                       source=rule.source, match_examples=tuple(found["match"]),
                       not_match_examples=tuple(found["not_match"]))


def _load_paths(file: _File, entries: dict[str, tuple[yaml.Node, yaml.Node]]) -> PathRules:
    values: dict[str, tuple[str, ...]] = {}
    for key in ("read_only", "hidden"):
        if key not in entries:
            continue
        globs = []
        for item, glob in file.strings(entries[key][1], key):
            if glob.startswith("/") or ".." in glob.split("/"):
                file.problem(item, f"{key}: {glob!r} must be a glob relative to the workspace (no leading / or ..)")
            else:
                globs.append(glob.strip())
        values[key] = tuple(globs)
    return PathRules(**values)


def _load_network(file: _File, entries: dict[str, tuple[yaml.Node, yaml.Node]], out: dict[str, Any]) -> None:
    if "allow_net" in entries:
        value = file.boolean(entries["allow_net"][1], "allow_net")
        if value is not None:
            out["allow_net"] = value
    if "allowed_hosts" in entries:
        hosts = []
        for item, host in file.strings(entries["allowed_hosts"][1], "allowed_hosts"):
            if "://" in host or "/" in host or any(c.isspace() for c in host):
                file.problem(item, f"allowed_hosts: {host!r} must be a host name such as api.github.com "
                                   f"(optionally host:port), not a URL")
            else:
                hosts.append(host.lower())
        out["allowed_hosts"] = tuple(hosts)


def _allowed_command_rules(allowed_commands: Sequence[str], problems: list[str]) -> tuple[CommandRule, ...]:
    rules = []
    for entry in allowed_commands:
        entry = entry.strip()
        if not entry:
            continue
        problem = prefix_problem(entry)
        if problem:
            problems.append(f"{ALLOWED_COMMANDS_SOURCE}: {problem}")
            continue
        rules.append(CommandRule(prefix=tuple(entry.split()), decision="allow",
                                 reason="allowed by AGENT_ALLOWED_COMMANDS", source=ALLOWED_COMMANDS_SOURCE))
    return tuple(rules)


def _load(policy_dir: Path, allowed_commands: Sequence[str], allow_net: bool | None
          ) -> tuple[PolicySet | None, list[str]]:
    problems: list[str] = []
    policy_dir = Path(policy_dir)
    if not policy_dir.is_dir():
        return None, [f"{policy_dir}: the policy directory does not exist"]
    values: dict[str, Any] = {"source_dir": str(policy_dir)}
    tools_file, tools_entries = _read(policy_dir, "tools.yaml", problems)
    _load_tools(tools_file, tools_entries, values)
    paths_file, paths_entries = _read(policy_dir, "paths.yaml", problems)
    values["paths"] = _load_paths(paths_file, paths_entries)
    net_file, net_entries = _read(policy_dir, "network.yaml", problems)
    _load_network(net_file, net_entries, values)
    extra = _allowed_command_rules(allowed_commands, problems)
    values["command_rules"] = values.get("command_rules", ()) + extra
    if allow_net is not None:
        values["allow_net"] = allow_net
    if problems:
        return None, problems
    return PolicySet(**values), []


def load_policies(policy_dir: Path, *, allowed_commands: Sequence[str] = (),
                  allow_net: bool | None = None) -> PolicySet:
    """The whole validated policy, or PolicyError naming the first problem as `file:line: problem`."""
    policy, problems = _load(policy_dir, allowed_commands, allow_net)
    if policy is None:
        more = f" ({len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise PolicyError(problems[0], hint=f"fix the policy file, then check it with "
                                            f"`agent policies validate {policy_dir}`{more}")
    return policy


def validate_policy_dir(policy_dir: Path, *, allowed_commands: Sequence[str] = ()) -> list[str]:
    """Every problem in a policy directory (empty when it is valid), for `agent policies validate`."""
    return _load(policy_dir, allowed_commands, None)[1]


def describe_policy(policy: PolicySet) -> str:
    """A readable listing of the policy, for `agent policies show`."""
    lines = [f"policy directory: {policy.source_dir or '(built in)'}", "", "tools:"]
    for tool, verdict in sorted(policy.tools.items()):
        lines.append(f"  {tool:<16} {verdict}")
    lines += ["", f"run_command: default {policy.default_command}, shell form {policy.shell_form}", "  rules:"]
    width = max((len(r.text) for r in policy.command_rules), default=10)
    for rule in policy.command_rules:
        net = " [network]" if rule.network else ""
        reason = f"  {rule.reason}" if rule.reason else ""
        lines.append(f"    {rule.text:<{width}}  {rule.decision:<5}{net}  ({rule.source}){reason}")
    lim = policy.limits
    lines += ["", f"limits: timeout {lim.default_timeout_s:g}s (max {lim.max_timeout_s:g}s), memory "
                  f"{lim.memory_mb} MB, cpu {lim.cpu_s}s, output {lim.output_chars} chars"
                  + (f", processes {lim.max_processes}" if lim.max_processes else "")]
    b = policy.budgets
    lines.append(f"budgets: max tool calls {b.max_tool_calls or 'unlimited'}, max tokens "
                 f"{b.max_tokens or 'unlimited'}")
    lines += ["", f"paths: read-only {', '.join(policy.paths.read_only) or '(none)'}",
              f"       hidden    {', '.join(policy.paths.hidden) or '(none)'}"]
    hosts = ", ".join(policy.allowed_hosts) or "(none)"
    lines += ["", f"network: commands {'may' if policy.allow_net else 'may not'} use the network "
                  f"(ALLOW_NET={'true' if policy.allow_net else 'false'}); MCP hosts: {hosts}"]
    return "\n".join(lines)


class PolicyStore:
    """The policy in force; a reload that fails keeps the previous one (never a half-loaded policy)."""

    def __init__(self, policy_dir: Path, allowed_commands: Sequence[str] = (), allow_net: bool | None = None) -> None:
        self.policy_dir = Path(policy_dir)
        self.allowed_commands = tuple(allowed_commands)
        self.allow_net = allow_net
        self.current: PolicySet = load_policies(self.policy_dir, allowed_commands=self.allowed_commands,
                                                allow_net=allow_net)
        self.reloads = 0
        self.failed_reloads = 0
        self._listeners: list[Callable[[str | None], None]] = []

    def reload(self) -> str | None:
        """Load the files again; returns the first `file:line: problem` (and keeps the old policy) when invalid."""
        try:
            policy = load_policies(self.policy_dir, allowed_commands=self.allowed_commands, allow_net=self.allow_net)
        except PolicyError as exc:
            self.failed_reloads += 1
            error: str | None = exc.message
        else:
            self.current = policy
            self.reloads += 1
            error = None
        for listener in list(self._listeners):
            listener(error)
        return error

    def subscribe(self, listener: Callable[[str | None], None]) -> Callable[[], None]:
        """Call listener(error or None) after every reload; returns the function that unsubscribes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def install_sighup_handler(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_signal_handler(signal.SIGHUP, self.reload)

    def remove_sighup_handler(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.remove_signal_handler(signal.SIGHUP)


class BudgetTracker:
    """Counts tool calls and tokens in one run against tools.yaml `budgets`."""

    def __init__(self, budgets: Budgets) -> None:
        self.budgets = budgets
        self.tool_calls = 0
        self.tokens = 0

    def reset(self) -> None:
        self.tool_calls = 0
        self.tokens = 0

    def count_tool_call(self) -> str | None:
        """Count one call; the refusal message when it goes over max_tool_calls."""
        self.tool_calls += 1
        limit = self.budgets.max_tool_calls
        if limit is not None and self.tool_calls > limit:
            return (f"tool call budget exhausted: this run has made {limit} tool calls, the limit in tools.yaml "
                    f"budgets.max_tool_calls; stop calling tools and give your final answer")
        return None

    def add_tokens(self, n: int) -> str | None:
        """Add used tokens; the message when the run is over max_tokens."""
        self.tokens += max(0, n)
        limit = self.budgets.max_tokens
        if limit is not None and self.tokens > limit:
            return (f"token budget exhausted: this run has used {self.tokens} tokens, above the limit of {limit} "
                    f"in tools.yaml budgets.max_tokens")
        return None
