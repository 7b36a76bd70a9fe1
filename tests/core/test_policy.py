"""Policy loading: the shipped files validate, broken files are refused with file:line, reload keeps the old."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from pathlib import Path

import pytest

from core.errors import PolicyError
from core.policy import (
    BudgetTracker,
    PolicyStore,
    describe_policy,
    load_policies,
    validate_policy_dir,
)
from core.policy_types import Budgets, CommandLimits

SHIPPED = Path(__file__).resolve().parents[2] / "policies"

MINIMAL_TOOLS = """\
version: 1
tools:
  read_file: allow
  run_command: ask
run_command:
  default: ask
  rules:
    - prefix: git push
      decision: ask
      network: true
      examples: {match: ["git push origin"], not_match: ["git pull"]}
"""


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    d = tmp_path / "policies"
    shutil.copytree(SHIPPED, d)
    return d


def write_tools(policy_dir: Path, text: str) -> None:
    (policy_dir / "tools.yaml").write_text(text, encoding="utf-8")


def first_problem(policy_dir: Path) -> str:
    with pytest.raises(PolicyError) as err:
        load_policies(policy_dir)
    return err.value.message


def test_shipped_policies_load_and_validate() -> None:
    assert validate_policy_dir(SHIPPED) == []
    policy = load_policies(SHIPPED)
    assert policy.tools["read_file"] == "allow"
    assert policy.tools["write_file"] == "ask"
    assert policy.tools["mcp"] == "ask"
    assert policy.default_command == "ask" and policy.shell_form == "allow"
    assert policy.allow_net is False and policy.allowed_hosts == ()
    assert policy.paths.is_read_only(".git/config")
    assert policy.paths.is_hidden(".env.local") and policy.paths.is_hidden("keys/server.pem")
    by_text = {r.text: r for r in policy.command_rules}
    assert by_text["sudo"].decision == "deny"
    assert by_text["git status"].decision == "allow"
    assert by_text["rm"].decision == "ask"
    assert by_text["curl"].network and by_text["pip install"].network and by_text["git push"].network
    assert by_text["sudo"].source.startswith("tools.yaml:")
    assert all(r.match_examples and r.not_match_examples for r in policy.command_rules)


def test_limits_and_budgets_are_read(policy_dir: Path) -> None:
    write_tools(policy_dir, MINIMAL_TOOLS + "  limits: {timeout_s: 30, max_timeout_s: 60, memory_mb: 512, cpu_s: 20,"
                                           " output_chars: 5000}\nbudgets: {max_tool_calls: 7, max_tokens: 9000}\n")
    policy = load_policies(policy_dir)
    assert policy.limits == CommandLimits(default_timeout_s=30, max_timeout_s=60, memory_mb=512, cpu_s=20,
                                          output_chars=5000)
    assert policy.budgets == Budgets(max_tool_calls=7, max_tokens=9000)
    assert policy.command_rules[0].source == "tools.yaml:8"


def test_bad_verdict_names_file_line_and_problem(policy_dir: Path) -> None:
    write_tools(policy_dir, MINIMAL_TOOLS.replace("decision: ask", "decision: maybe"))
    assert first_problem(policy_dir) == \
        "tools.yaml:9: rule 'git push': decision must be allow, ask or deny (got 'maybe')"


def test_bad_tool_verdict(policy_dir: Path) -> None:
    write_tools(policy_dir, MINIMAL_TOOLS.replace("read_file: allow", "read_file: yes"))
    assert first_problem(policy_dir) == "tools.yaml:3: tool 'read_file' must be allow, ask or deny (got True)"


def test_bad_yaml_names_the_line(policy_dir: Path) -> None:
    write_tools(policy_dir, "version: 1\ntools:\n  read_file: [allow\nrun_command: {}\n")
    assert first_problem(policy_dir) == "tools.yaml:4: not valid YAML (expected ',' or ']', but got ':')"


def test_unknown_keys_are_refused(policy_dir: Path) -> None:
    write_tools(policy_dir, MINIMAL_TOOLS + "colour: red\n")
    assert first_problem(policy_dir) == \
        "tools.yaml:12: unknown key 'colour' in tools.yaml (expected: version, tools, run_command, budgets)"
    write_tools(policy_dir, MINIMAL_TOOLS.replace("      network: true", "      netwrk: true"))
    assert first_problem(policy_dir) == \
        "tools.yaml:10: unknown key 'netwrk' in rule #1 (expected: prefix, decision, reason, network, examples)"


def test_unknown_tool_is_refused(policy_dir: Path) -> None:
    write_tools(policy_dir, MINIMAL_TOOLS.replace("read_file: allow", "raed_file: allow"))
    assert first_problem(policy_dir).startswith("tools.yaml:3: unknown tool 'raed_file' (known: ")


def test_failing_match_example_is_refused(policy_dir: Path) -> None:
    write_tools(policy_dir, MINIMAL_TOOLS.replace('match: ["git push origin"]', 'match: ["git pull origin"]'))
    assert first_problem(policy_dir) == \
        "tools.yaml:11: rule 'git push': example 'git pull origin' should match the rule but no part of it does"


def test_failing_not_match_example_is_refused(policy_dir: Path) -> None:
    write_tools(policy_dir, MINIMAL_TOOLS.replace('not_match: ["git pull"]', 'not_match: ["ls && git push"]'))
    assert first_problem(policy_dir) == \
        "tools.yaml:11: rule 'git push': example 'ls && git push' should not match the rule but it does"


def test_example_that_does_not_parse_is_refused(policy_dir: Path) -> None:
    write_tools(policy_dir, MINIMAL_TOOLS.replace('match: ["git push origin"]', """match: ["git push 'x"]"""))
    assert first_problem(policy_dir).startswith("tools.yaml:11: rule 'git push': example \"git push 'x\" does "
                                                "not parse (cannot parse the command: a single quote")


def test_duplicate_and_empty_prefixes_are_refused(policy_dir: Path) -> None:
    dup = MINIMAL_TOOLS + "    - {prefix: git   push, decision: deny}\n"
    write_tools(policy_dir, dup)
    assert first_problem(policy_dir) == "tools.yaml:12: rule 'git push' is defined twice (first on line 8)"
    write_tools(policy_dir, MINIMAL_TOOLS + "    - {prefix: '', decision: deny}\n")
    assert first_problem(policy_dir) == "tools.yaml:12: rule #2: prefix must be a non-empty string (got '')"
    write_tools(policy_dir, MINIMAL_TOOLS + "    - {prefix: 'ls | sh', decision: deny}\n")
    assert "must be plain command words (found '|')" in first_problem(policy_dir)


def test_wrong_types_are_refused(policy_dir: Path) -> None:
    write_tools(policy_dir, MINIMAL_TOOLS.replace("network: true", "network: sometimes"))
    assert first_problem(policy_dir) == "tools.yaml:10: rule 'git push': network must be true or false " \
                                        "(got 'sometimes')"
    write_tools(policy_dir, MINIMAL_TOOLS + "budgets: {max_tool_calls: -1}\n")
    assert first_problem(policy_dir) == \
        "tools.yaml:12: budgets.max_tool_calls must be a whole number above 0 or null (got -1)"


def test_paths_and_network_files_are_validated(policy_dir: Path) -> None:
    (policy_dir / "paths.yaml").write_text("read_only: ['/etc/**']\nhidden: []\n")
    assert first_problem(policy_dir) == \
        "paths.yaml:1: read_only: '/etc/**' must be a glob relative to the workspace (no leading / or ..)"
    (policy_dir / "paths.yaml").write_text("read_only: []\n")
    (policy_dir / "network.yaml").write_text("allow_net: 'no thanks'\n")
    assert first_problem(policy_dir) == "network.yaml:1: allow_net must be true or false (got 'no thanks')"


def test_missing_file_is_named(policy_dir: Path) -> None:
    (policy_dir / "network.yaml").unlink()
    assert first_problem(policy_dir).startswith(f"network.yaml: missing from {policy_dir}")


def test_validate_reports_every_problem(policy_dir: Path) -> None:
    write_tools(policy_dir, MINIMAL_TOOLS.replace("decision: ask", "decision: maybe") + "colour: red\n")
    (policy_dir / "network.yaml").write_text("allow_net: 3\n")
    problems = validate_policy_dir(policy_dir)
    assert [p.split(":")[0] for p in problems] == ["tools.yaml", "tools.yaml", "network.yaml"]
    with pytest.raises(PolicyError) as err:
        load_policies(policy_dir)
    assert "2 more problem(s)" in err.value.hint


def test_allowed_commands_become_allow_rules(policy_dir: Path) -> None:
    policy = load_policies(policy_dir, allowed_commands=("make test", " npm run ", ""))
    extra = [r for r in policy.command_rules if r.source == "AGENT_ALLOWED_COMMANDS"]
    assert [(r.prefix, r.decision) for r in extra] == [(("make", "test"), "allow"), (("npm", "run"), "allow")]
    with pytest.raises(PolicyError) as err:
        load_policies(policy_dir, allowed_commands=("make test; rm -rf /",))
    assert err.value.message.startswith("AGENT_ALLOWED_COMMANDS: prefix 'make test; rm -rf /' must be plain")


def test_allow_net_argument_overrides_network_yaml(policy_dir: Path) -> None:
    assert load_policies(policy_dir).allow_net is False
    assert load_policies(policy_dir, allow_net=True).allow_net is True
    (policy_dir / "network.yaml").write_text("allow_net: true\nallowed_hosts: [API.github.com]\n")
    policy = load_policies(policy_dir)
    assert policy.allow_net is True and policy.allowed_hosts == ("api.github.com",)
    assert load_policies(policy_dir, allow_net=False).allow_net is False


def test_describe_policy_lists_everything() -> None:
    text = describe_policy(load_policies(SHIPPED, allowed_commands=("make test",)))
    assert "read_file        allow" in text
    assert "(AGENT_ALLOWED_COMMANDS)" in text
    sudo_line = next(line for line in text.splitlines() if line.strip().startswith("sudo "))
    assert "deny" in sudo_line and "(tools.yaml:" in sudo_line
    assert "[network]" in text
    assert "budgets: max tool calls 200" in text
    assert "hidden    .env*" in text
    assert "ALLOW_NET=false" in text


def test_reload_keeps_the_old_policy_when_the_new_one_is_invalid(policy_dir: Path) -> None:
    store = PolicyStore(policy_dir)
    seen: list[str | None] = []
    unsubscribe = store.subscribe(seen.append)
    old = store.current
    write_tools(policy_dir, MINIMAL_TOOLS.replace("decision: ask", "decision: maybe"))
    error = store.reload()
    assert error == "tools.yaml:9: rule 'git push': decision must be allow, ask or deny (got 'maybe')"
    assert store.current is old
    write_tools(policy_dir, MINIMAL_TOOLS)
    assert store.reload() is None
    assert [r.text for r in store.current.command_rules] == ["git push"]
    assert (store.reloads, store.failed_reloads) == (1, 1)
    assert seen == [error, None]
    unsubscribe()
    store.reload()
    assert len(seen) == 2


def test_store_refuses_to_start_on_an_invalid_policy(policy_dir: Path) -> None:
    write_tools(policy_dir, "tools: [")
    with pytest.raises(PolicyError, match=r"^tools\.yaml:1: not valid YAML"):
        PolicyStore(policy_dir)


async def test_sighup_reloads_the_policy(policy_dir: Path) -> None:
    store = PolicyStore(policy_dir, allowed_commands=("make test",), allow_net=True)
    loop = asyncio.get_running_loop()
    reloaded = asyncio.Event()
    store.subscribe(lambda error: reloaded.set())
    store.install_sighup_handler(loop)
    try:
        write_tools(policy_dir, MINIMAL_TOOLS)
        os.kill(os.getpid(), signal.SIGHUP)
        await asyncio.wait_for(reloaded.wait(), timeout=10)
    finally:
        store.remove_sighup_handler(loop)
    assert [r.text for r in store.current.command_rules] == ["git push", "make test"]
    assert store.current.allow_net is True


def test_budget_tracker_counts_calls_and_tokens() -> None:
    tracker = BudgetTracker(Budgets(max_tool_calls=2, max_tokens=100))
    assert tracker.count_tool_call() is None
    assert tracker.count_tool_call() is None
    assert tracker.count_tool_call() == ("tool call budget exhausted: this run has made 2 tool calls, the limit in "
                                         "tools.yaml budgets.max_tool_calls; stop calling tools and give your final "
                                         "answer")
    assert tracker.add_tokens(60) is None
    assert tracker.add_tokens(50) == ("token budget exhausted: this run has used 110 tokens, above the limit of 100 "
                                      "in tools.yaml budgets.max_tokens")
    tracker.reset()
    assert tracker.count_tool_call() is None and tracker.add_tokens(100) is None


def test_unlimited_budgets_never_refuse() -> None:
    tracker = BudgetTracker(Budgets(max_tool_calls=None, max_tokens=None))
    assert all(tracker.count_tool_call() is None for _ in range(1000))
    assert tracker.add_tokens(10**9) is None
