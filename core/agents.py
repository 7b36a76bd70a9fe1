"""The agent roles on the SDK: planner, executor and reviewer, with prompts short enough for an 8k context."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from agents import Agent, ModelSettings
from agents.agent import MCPConfig
from agents.models.interface import Model

from tools.registry import ToolRuntime, executor_tools, planner_tools, reviewer_tools

EXECUTOR_INSTRUCTIONS = """You are dev-agent, a careful coding assistant working in a project workspace.
Work in small steps with the tools:
1. First call update_plan with a short plan (2-6 steps), then keep it current (mark steps in_progress/done).
2. Read files before you change them. Prefer edit_file for small changes; write_file for new files.
3. Paths are relative to the workspace root. Commands run in the workspace root with run_command.
4. If a tool call is refused or rejected, read the reason and adapt; do not repeat the same call.
5. When the task is done, reply with a short summary of what you changed and how you checked it."""

PLANNER_INSTRUCTIONS = """You plan coding tasks in a project workspace.
Look around briefly if needed (list_dir, read_file), then call update_plan once with 2-6 concrete steps,
all pending. Then reply with one line: the plan is ready. Do not change any file."""

REVIEWER_INSTRUCTIONS = """You review a change made in a project workspace for the task below.
Check the diff and, if test output is given, whether the tests pass. You may read files.
Reply with exactly one of:
APPROVED: <one line why>
CHANGES NEEDED: <the concrete problems to fix>"""


# Passed to every Agent that gets MCP servers (core.mcp): the SDK's own server prefix on tool names.
AGENT_MCP_CONFIG: MCPConfig = {"include_server_in_tool_names": True}


@dataclass(frozen=True)
class ReviewVerdict:
    approved: bool
    findings: str


_VERDICT_RE = re.compile(r"^\W*(APPROVED|CHANGES[\s_-]*NEEDED|LGTM)\b[:\s-]*(.*)", re.IGNORECASE | re.DOTALL)


def parse_review(text: str) -> ReviewVerdict:
    """Plain text plus validation instead of structured output: small models keep to a keyword, not a schema.

    An answer with neither keyword counts as approval only when it clearly says so; otherwise its text
    goes back to the executor as findings (a silent reviewer must not block forever: rounds are bounded).
    """
    stripped = text.strip()
    for line in stripped.splitlines() or [""]:
        m = _VERDICT_RE.match(line)
        if m:
            approved = m.group(1).upper() in ("APPROVED", "LGTM")
            rest = stripped[stripped.find(line) + len(line):].strip()
            findings = (m.group(2).strip() + ("\n" + rest if rest else "")).strip()
            return ReviewVerdict(approved=approved, findings=findings)
    low = stripped.lower()
    approved = any(w in low for w in ("looks good", "no issues", "no problems", "all tests pass"))
    return ReviewVerdict(approved=approved, findings=stripped)


@dataclass
class AgentSet:
    """The agent graph. Names are unique and stable: a saved RunState is restored against the same graph."""

    executor: Agent[ToolRuntime]
    planner: Agent[ToolRuntime]
    reviewer: Agent[ToolRuntime]

    def by_role(self, role: str) -> Agent[ToolRuntime]:
        return {"executor": self.executor, "planner": self.planner, "reviewer": self.reviewer}[role]


def build_agents(model: Model, settings: ModelSettings, mcp_servers: list[Any] | None = None) -> AgentSet:
    """The three agents. Prompts name no absolute path: tool paths are relative, and a prompt that is the same
    for every workspace lets a local server reuse its prompt cache (prefill is the slow part on a CPU)."""
    common: dict[str, Any] = {"model": model, "model_settings": settings}
    executor = Agent[ToolRuntime](
        name="executor", instructions=EXECUTOR_INSTRUCTIONS,
        tools=executor_tools(), mcp_servers=list(mcp_servers or []), mcp_config=AGENT_MCP_CONFIG, **common)
    planner = Agent[ToolRuntime](
        name="planner", instructions=PLANNER_INSTRUCTIONS,
        tools=planner_tools(), **common)
    reviewer = Agent[ToolRuntime](
        name="reviewer", instructions=REVIEWER_INSTRUCTIONS,
        tools=reviewer_tools(), **common)
    return AgentSet(executor=executor, planner=planner, reviewer=reviewer)
