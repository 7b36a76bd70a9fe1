"""Property tests: a denied command stays denied however it is wrapped, and the parser never crashes."""

from __future__ import annotations

import itertools
import shlex
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from core.approvals import AlwaysAllowRule, decide
from core.commands import CommandParseError, parse_command
from core.policy import load_policies

POLICY = load_policies(Path(__file__).resolve().parents[2] / "policies", allow_net=False)
MODES = st.sampled_from(["ask", "auto-edit", "full-auto"])
# Session rules the user may have added: they turn asks into allows, never a deny.
SESSION_RULES = (AlwaysAllowRule("command", "curl"), AlwaysAllowRule("command", "sudo"),
                 AlwaysAllowRule("command", "echo"), AlwaysAllowRule("command", "npm install"),
                 AlwaysAllowRule("path", "**"))

DENIED = ["sudo rm -rf /", "sudo ls", "/usr/bin/sudo id", "s'u'do ls", '"sudo" ls', "\\sudo ls", "doas id",
          "curl http://example.com", "wget -q x", "git -C . push origin", "npm install left-pad",
          "dd if=/dev/zero of=disk", "mkfs /dev/sda", "shutdown now", "$'\\x73udo' ls", "sudo -u root -E ls"]
SAFE = ["ls", "ls -la", "pwd", "echo hi", "git status", "cat README.md", "grep -rn x src", "wc -l a.py", "true",
        "git diff HEAD", "pytest -q", "python -m pytest -x"]
OPERATORS = [";", "&&", "||", "|", "\n"]


def wrap(kind: str, cmd: str, safe: str, op: str) -> str:
    """Hide cmd inside one more layer of shell syntax."""
    layers = {
        "env": f"env {cmd}", "env_var": f"env -i A=1 {cmd}", "assign": f"A=1 {cmd}",
        "timeout": f"timeout 5 {cmd}", "timeout_opts": f"timeout -s KILL -k 1 5 {cmd}", "nice": f"nice -n 1 {cmd}",
        "nohup": f"nohup {cmd}", "time": f"time {cmd}", "command": f"command {cmd}", "exec": f"exec {cmd}",
        "stdbuf": f"stdbuf -oL {cmd}", "xargs": f"{safe} | xargs -n 1 {cmd}",
        "bash": f"bash -c {shlex.quote(cmd)}", "sh": f"sh -ec {shlex.quote(cmd)}",
        "eval": f"eval {shlex.quote(cmd)}", "subst": f"echo $( {cmd} )", "dq_subst": f'echo "x $( {cmd} ) y"',
        "backtick": f"echo `{cmd}`" if "`" not in cmd else f"echo $( {cmd} )",
        "subshell": f"( {cmd} )", "group": f"{{ {cmd}; }}", "proc_subst": f"diff <( {cmd} ) a",
        "before": f"{safe} {op} {cmd}", "after": f"{cmd} {op} {safe}", "if": f"if {safe}; then {cmd}; fi",
        "while": f"while {cmd}; do {safe}; done", "find": f"find . -name x -exec {cmd} \\;",
        "redirect": f"{cmd} 2>&1 > /dev/null", "heredoc": f"cat <<EOF\n$( {cmd} )\nEOF",
    }
    return layers[kind]


WRAP_KINDS = ["env", "env_var", "assign", "timeout", "timeout_opts", "nice", "nohup", "time", "command", "exec",
              "stdbuf", "xargs", "bash", "sh", "eval", "subst", "dq_subst", "backtick", "subshell", "group",
              "proc_subst", "before", "after", "if", "while", "find", "redirect", "heredoc"]


# One draw per layer (not three) keeps hypothesis' own overhead low at 2,000 examples a suite.
LAYERS = st.lists(st.sampled_from(list(itertools.product(WRAP_KINDS, SAFE, OPERATORS))), max_size=4)


@settings(max_examples=2000, deadline=None)
@given(core=st.sampled_from(DENIED), layers=LAYERS, mode=MODES)
def test_a_denied_command_is_never_allowed_however_it_is_hidden(core: str, layers: list[tuple[str, str, str]],
                                                                mode: str) -> None:
    command = core
    for kind, safe, op in layers:
        command = wrap(kind, command, safe, op)
    decision = decide("run_command", {"command": command}, POLICY, mode, SESSION_RULES)
    assert decision.verdict != "allow", (command, decision.reason)


SHELLISH = st.text(alphabet=list("ab $()`'\"\\{};&|<>#*?=\n\t-~!0123456789EOF"), max_size=60)


@settings(max_examples=2000, deadline=None)
@given(text=st.one_of(st.text(max_size=80), SHELLISH), mode=MODES)
def test_parse_only_ever_raises_command_parse_error(text: str, mode: str) -> None:
    decision = decide("run_command", {"command": text}, POLICY, mode, SESSION_RULES)
    assert decision.verdict in ("allow", "ask", "deny") and decision.reason
    try:
        parsed = parse_command(text)
    except CommandParseError as exc:
        assert exc.message.strip() and decision.verdict == "deny"
        return
    assert parsed.parts
    assert all(isinstance(word, str) for part in parsed.parts for word in part.argv)
    if parsed.simple_argv is not None:
        assert not parsed.needs_shell


PREFIXES = ["", "timeout 5 ", "env A=1 ", "nice -n 1 ", "nohup ", "time ", "B=2 "]
GROUPINGS = ["( {} )", "echo $( {} )", "echo `{}`", "bash -c {q}", "{{ {}; }}"]


@settings(max_examples=2000, deadline=None)
@given(first=st.sampled_from(list(itertools.product(PREFIXES, SAFE))),
       rest=st.lists(st.sampled_from(list(itertools.product(OPERATORS, PREFIXES, SAFE))), max_size=4),
       groupings=st.lists(st.sampled_from(GROUPINGS), max_size=2), mode=MODES)
def test_a_command_made_of_allowed_parts_is_allowed(first: tuple[str, str], rest: list[tuple[str, str, str]],
                                                    groupings: list[str], mode: str) -> None:
    command = "".join(first) + "".join(f" {op} {prefix}{safe}" for op, prefix, safe in rest)
    for layer in groupings:
        if not ("`" in layer and "`" in command):
            command = layer.format(command, q=shlex.quote(command))
    decision = decide("run_command", {"command": command}, POLICY, mode)
    assert decision.verdict == "allow", (command, decision.reason)
