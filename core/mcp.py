"""MCP servers from settings.yaml: validated, connected in parallel, health-checked, guarded and audited.

Each `mcp_servers` entry becomes one of the SDK's local server objects (`MCPServerStdio`,
`MCPServerStreamableHttp`, `MCPServerSse`); the SDK turns their tools into function tools, exposed
under the SDK's server-prefixed names `mcp_<server>__<tool>` (`Agent(mcp_config=core.agents.AGENT_MCP_CONFIG)`).
Those are the names the model, the approvals, tools.yaml and the audit use.

Approval of one call: a tools.yaml entry for the prefixed name wins, then the entry's `tool_approval`
for the tool, then the entry's `approval`; `ask` becomes `allow` under a session always-allow rule
for the prefixed name (judged by `core.approvals.decide`). `deny` tools (`deny_tools`, `approval: deny`
without a `tool_approval` override, or `deny` in tools.yaml when the hub starts) are filtered out and
never offered to the model. `mcp: deny` in tools.yaml refuses every server.

HostedMCPTool does not work here: it is a tool of OpenAI's Responses API in which the provider
itself connects to the MCP server. LM Studio and other OpenAI-compatible servers are reached over Chat
Completions, which has no such tool type, so the SDK refuses it; dev-agent connects to MCP servers
itself, from inside the container, and offers their tools as ordinary function tools.

Every call that reaches a server is audited as `mcp_call` (server, tool, duration, ok) by the server
objects' own `call_tool`, so calls made after an approval or a resume are counted too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from agents.mcp import (
    MCPServer,
    MCPServerManager,
    MCPServerSse,
    MCPServerStdio,
    MCPServerStreamableHttp,
    create_static_tool_filter,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.approvals import Decision, decide
from core.audit import AuditLog
from core.config import Settings
from core.errors import AgentError, ConfigError
from core.policy_types import PolicySet
from tools.registry import ToolRuntime

Transport = Literal["stdio", "streamable_http", "sse"]
State = Literal["connected", "failed", "refused", "dead"]

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
CONNECT_TIMEOUT_S = 15.0
CLEANUP_TIMEOUT_S = 5.0

_SERVER_NAME = re.compile(r"[A-Za-z0-9]+(?:[-_][A-Za-z0-9]+)*")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SECRET_NAME = re.compile(r".*(KEY|TOKEN|SECRET|PASSWORD|AUTH).*", re.IGNORECASE)

_FIXES: dict[str, str] = {
    "name": "use letters, digits and single - or _ between them (at most 40 characters), unique per server",
    "transport": "use stdio, streamable_http or sse",
    "command": "for stdio, set command to the program that starts the server, e.g. npx or python",
    "args": "use a list of strings, e.g. [-m, my_server]",
    "env": "use a mapping of variable names to strings; ${VAR} takes a value from dev-agent's environment",
    "cwd": "use a directory path",
    "url": "for streamable_http and sse, set url to the server's http(s) address, e.g. http://127.0.0.1:8000/mcp",
    "headers": "use a mapping of header names to strings; ${VAR} takes a value from dev-agent's environment",
    "bearer_token_env": "name an environment variable that holds the token, e.g. GITHUB_TOKEN (not the token)",
    "allow_tools": "use a list of the server's tool names",
    "deny_tools": "use a list of the server's tool names",
    "approval": "use ask, allow or deny",
    "tool_approval": "use a mapping of tool name to ask or allow",
    "timeout_s": "use a number of seconds greater than 0, at most 600",
}


class McpServerConfig(BaseModel):
    """One `mcp_servers` entry of settings.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    transport: Transport
    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    bearer_token_env: str | None = None
    allow_tools: list[str] | None = None
    deny_tools: list[str] = Field(default_factory=list)
    approval: Literal["ask", "allow", "deny"] = "ask"
    tool_approval: dict[str, Literal["ask", "allow"]] = Field(default_factory=dict)
    timeout_s: float = Field(default=10.0, gt=0, le=600)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if len(v) > 40 or not _SERVER_NAME.fullmatch(v):
            raise ValueError(f"{v!r} is not a usable server name")
        return v

    @field_validator("bearer_token_env")
    @classmethod
    def _token_env(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v):
            raise ValueError("must be the name of an environment variable, not the token itself")
        return v

    @model_validator(mode="after")
    def _transport_fields(self) -> McpServerConfig:
        if self.transport == "stdio":
            if not self.command or not self.command.strip():
                raise ValueError("command: a stdio server needs the command that starts it")
            if self.url or self.headers or self.bearer_token_env:
                raise ValueError("url: url, headers and bearer_token_env are for streamable_http and sse servers")
        else:
            url = (self.url or "").strip()
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"url: a {self.transport} server needs an http:// or https:// url")
            if self.command or self.args or self.env or self.cwd:
                raise ValueError("command: command, args, env and cwd are for stdio servers")
        return self

    @property
    def prefix(self) -> str:
        return f"mcp_{self.name}__"

    @property
    def target(self) -> str:
        """Where the server is, for status lines: the command, or the URL without credentials or query."""
        if self.transport == "stdio":
            return " ".join([self.command or "", *self.args]).strip()
        parts = urlsplit(self.url or "")
        host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}{parts.path}"

    def verdict_for(self, tool: str) -> Literal["ask", "allow", "deny"]:
        """This entry's own verdict for one of its tools (tools.yaml is applied on top, in McpHub.decide)."""
        if tool in self.deny_tools or (self.allow_tools is not None and tool not in self.allow_tools):
            return "deny"
        return self.tool_approval.get(tool, self.approval)

    def static_filter(self, policy: PolicySet) -> dict[str, list[str]] | None:
        """The SDK static filter: allow_tools (or the tool_approval overrides of `approval: deny`), minus denials."""
        allowed = self.allow_tools
        if self.approval == "deny":
            overrides = list(self.tool_approval)
            allowed = [t for t in overrides if allowed is None or t in allowed]
        blocked = list(self.deny_tools)
        blocked += [name[len(self.prefix):] for name, verdict in policy.tools.items()
                    if verdict == "deny" and name.startswith(self.prefix)]
        return dict(create_static_tool_filter(allowed_tool_names=allowed,
                                              blocked_tool_names=blocked or None) or {}) or None


def qualified_name(server: str, tool: str) -> str:
    """The name the model sees, as the SDK builds it with include_server_in_tool_names (names up to 64 chars)."""
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "_-") else "_" for c in tool).strip("_-") or "tool"
    return f"mcp_{server}__{safe}"


def load_mcp_configs(raw: Sequence[Any]) -> list[McpServerConfig]:
    """Validate settings.yaml's `mcp_servers`; the first bad entry is a ConfigError naming mcp_servers[i].field."""
    if not isinstance(raw, list | tuple):
        raise ConfigError("mcp_servers: expected a list of servers", hint="write one '- name: ...' item per server")
    configs: list[McpServerConfig] = []
    seen: set[str] = set()
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise ConfigError(f"mcp_servers[{i}]: expected a mapping with name and transport (got {entry!r})",
                              hint="e.g. {name: docs, transport: stdio, command: npx, args: [some-mcp-server]}")
        try:
            cfg = McpServerConfig(**entry)
        except ValidationError as exc:
            err = exc.errors()[0]
            msg = err["msg"].removeprefix("Value error, ")
            field = str(err["loc"][0]) if err["loc"] else ""
            if not field and ":" in msg:  # a cross-field problem names its field first
                field, msg = (s.strip() for s in msg.split(":", 1))
            if err["type"] == "extra_forbidden":
                msg = f"unknown field; the fields are {', '.join(McpServerConfig.model_fields)}"
            shown = "" if field in ("env", "headers") or field not in entry else f" (got {entry[field]!r})"
            raise ConfigError(f"mcp_servers[{i}].{field or '?'}: {msg}{shown}",
                              hint=_FIXES.get(field, "see README, section MCP servers")) from None
        if cfg.name in seen:
            raise ConfigError(f"mcp_servers[{i}].name: the name {cfg.name!r} is used twice",
                              hint="give every server its own name: it prefixes the server's tool names")
        seen.add(cfg.name)
        configs.append(cfg)
    return configs


class _StartError(AgentError):
    """A server that cannot even be built (a missing environment variable): recorded, never raised out."""


def _expand(value: str, what: str) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in os.environ:
            raise _StartError(f"{what} uses ${{{name}}}, which is not set in dev-agent's environment")
        return os.environ[name]

    return _ENV_REF.sub(sub, value)


@dataclass
class McpStatus:
    """One server as `agent mcp health` and the TUI show it."""

    name: str
    transport: str
    target: str
    state: State
    latency_ms: float | None = None
    tool_count: int = 0
    tools: list[str] = dataclasses.field(default_factory=list)
    last_error: str | None = None

    @property
    def healthy(self) -> bool:
        return self.state == "connected"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        head = f"{self.name} ({self.transport}: {self.target}): {self.state}"
        if self.state == "connected":
            latency = f"{self.latency_ms:.0f} ms" if self.latency_ms is not None else "latency unknown"
            return f"{head}, {latency}, {self.tool_count} tool(s): {', '.join(self.tools) or '(none)'}"
        return f"{head}: {self.last_error}" if self.last_error else head


def _error_text(exc: BaseException) -> str:
    """The innermost messages of an exception (task groups wrap transport errors), without tracebacks."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(dict.fromkeys(_error_text(e) for e in exc.exceptions))
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "timed out"
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return text if isinstance(text, str) else str(text)


class _AuditedCalls:
    """Mixed into the SDK server classes: every call_tool is timed and audited, failures remembered."""

    _hub: McpHub
    _config: McpServerConfig

    async def call_tool(self, tool_name: str, arguments: dict[str, Any] | None,
                        meta: dict[str, Any] | None = None) -> Any:
        started = time.perf_counter()
        ok, error = False, None
        try:
            result = await super().call_tool(tool_name, arguments, meta)  # type: ignore[misc]
            ok = not (getattr(result, "is_error", None) or getattr(result, "isError", False))
            return result
        except BaseException as exc:
            error = self._hub.scrub(_error_text(exc))
            raise
        finally:
            self._hub._record_call(self._config, tool_name, (time.perf_counter() - started) * 1000, ok, error)


class _Stdio(_AuditedCalls, MCPServerStdio):
    pass


class _StreamableHttp(_AuditedCalls, MCPServerStreamableHttp):
    pass


class _Sse(_AuditedCalls, MCPServerSse):
    pass


class McpHub:
    """The configured MCP servers of one process: start them, hand the connected ones to the agents, check them."""

    def __init__(self, settings: Settings, policy: PolicySet, *, connect_timeout_s: float = CONNECT_TIMEOUT_S
                 ) -> None:
        self.settings = settings
        self.policy = policy
        self.configs = load_mcp_configs(settings.mcp_servers)
        self.connect_timeout_s = connect_timeout_s
        self.servers: list[MCPServer] = []
        self.statuses: list[McpStatus] = []
        self._secrets: set[str] = {settings.api_key.get_secret_value()}
        self._by_name: dict[str, tuple[McpServerConfig, MCPServer]] = {}
        self._manager: MCPServerManager | None = None
        self.audit = AuditLog(settings.state_dir, secrets=sorted(self._secrets))

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> list[McpStatus]:
        """Connect every configured server in parallel; a failure is a status entry, never an exception."""
        if self.statuses:
            return self.statuses
        statuses: dict[str, McpStatus] = {}
        candidates: list[tuple[McpServerConfig, MCPServer]] = []
        for cfg in self.configs:
            status = McpStatus(cfg.name, cfg.transport, cfg.target, "failed")
            statuses[cfg.name] = status
            refusal = self._refusal(cfg)
            if refusal:
                status.state, status.last_error = "refused", refusal
                continue
            try:
                candidates.append((cfg, self._build(cfg)))
            except _StartError as exc:
                status.last_error = f"MCP server '{cfg.name}': {exc.message}"
        # Again, now that the expanded headers, tokens and secret env values are known: the audit masks them.
        self.audit = AuditLog(self.settings.state_dir, secrets=sorted(self._secrets))
        if candidates:
            self._manager = MCPServerManager([s for _, s in candidates], connect_timeout_seconds=self.connect_timeout_s,
                                             cleanup_timeout_seconds=CLEANUP_TIMEOUT_S, connect_in_parallel=True)
            await self._manager.connect_all()
            errors = self._manager.errors
            connected = [(cfg, s) for cfg, s in candidates if s not in errors]
            for cfg, server in candidates:
                if server in errors:
                    statuses[cfg.name].last_error = self._failure(cfg, errors[server], "could not start")
            await asyncio.gather(*(self._first_listing(cfg, s, statuses[cfg.name]) for cfg, s in connected))
            for cfg, server in connected:
                if statuses[cfg.name].state == "connected":
                    self._by_name[cfg.name] = (cfg, server)
                    self.servers.append(server)
        self.statuses = [statuses[cfg.name] for cfg in self.configs]
        for status in self.statuses:
            self.audit.record("mcp_server", server=status.name, transport=status.transport, state=status.state,
                              tool_count=status.tool_count, error=status.last_error)
        return self.statuses

    async def _first_listing(self, cfg: McpServerConfig, server: MCPServer, status: McpStatus) -> None:
        # This listing fills the SDK's tool cache: later listings by the agents never touch the server, so a
        # server that dies mid-session fails its calls (readable by the model) instead of every run.
        started = time.perf_counter()
        try:
            tools = await asyncio.wait_for(server.list_tools(), timeout=cfg.timeout_s)
        except Exception as exc:
            status.last_error = self._failure(cfg, exc, "could not list its tools")
            return
        status.state, status.latency_ms = "connected", round((time.perf_counter() - started) * 1000, 1)
        status.tools = [qualified_name(cfg.name, t.name) for t in tools]
        status.tool_count = len(tools)

    async def health(self) -> list[McpStatus]:
        """Ask every started server for its tools again, measure the round trip, and mark the ones that died."""
        await asyncio.gather(*(self._check(cfg, server) for cfg, server in self._by_name.values()))
        return self.statuses

    async def _check(self, cfg: McpServerConfig, server: MCPServer) -> None:
        status = self.status(cfg.name)
        session = getattr(server, "session", None)
        started = time.perf_counter()
        try:
            if session is None:
                raise ConnectionError("the connection is closed")
            # The raw session, not server.list_tools(): a failed refresh would leave the SDK cache dirty and
            # break every later run instead of only this server's calls.
            result = await asyncio.wait_for(session.list_tools(), timeout=cfg.timeout_s)
        except Exception as exc:
            status.state, status.latency_ms = "dead", None
            status.last_error = self._failure(cfg, exc, "does not answer")
            self.audit.record("mcp_server", server=cfg.name, transport=cfg.transport, state="dead",
                              error=status.last_error)
            return
        names = [t.name for t in result.tools if self._offered(cfg, t.name)]
        status.state, status.latency_ms = "connected", round((time.perf_counter() - started) * 1000, 1)
        status.tools, status.tool_count = [qualified_name(cfg.name, n) for n in names], len(names)
        status.last_error = None

    def _offered(self, cfg: McpServerConfig, tool: str) -> bool:
        flt = cfg.static_filter(self.policy) or {}
        allowed, blocked = flt.get("allowed_tool_names"), flt.get("blocked_tool_names") or []
        return (allowed is None or tool in allowed) and tool not in blocked

    async def close(self) -> None:
        """Stop every server (stdio processes end, HTTP sessions close). Safe to call twice."""
        manager, self._manager = self._manager, None
        self.servers = []
        self._by_name.clear()
        if manager is not None:
            await manager.cleanup_all()

    def status(self, name: str) -> McpStatus:
        return next(s for s in self.statuses if s.name == name)

    # ----------------------------------------------------------------- approvals

    def decide(self, tool: str, runtime: ToolRuntime | None = None) -> Decision:
        """The verdict on a call of a prefixed MCP tool name (see the module docstring for the order)."""
        found = self._config_for(tool)
        policy = runtime.policies.current if runtime is not None else self.policy
        mode = runtime.mode if runtime is not None else self.settings.approval
        rules = tuple(runtime.session_rules) if runtime is not None else ()
        if found is None:
            return decide(tool, {}, policy, mode, rules)
        cfg, raw = found
        own = cfg.verdict_for(raw)
        # The entry's verdict replaces tools.yaml's generic `mcp` default; a tools.yaml line naming the tool wins.
        merged = dataclasses.replace(policy, tools={**policy.tools, "mcp": own})
        decision = decide(tool, {}, merged, mode, rules)
        if tool not in policy.tools:
            reason = decision.reason.replace("tools.yaml 'mcp'", f"settings.yaml mcp_servers '{cfg.name}'")
            decision = dataclasses.replace(decision, reason=reason)
        return decision

    def _config_for(self, tool: str) -> tuple[McpServerConfig, str] | None:
        for cfg in sorted(self.configs, key=lambda c: len(c.name), reverse=True):
            if tool.startswith(cfg.prefix):
                part = tool[len(cfg.prefix):]
                cached = getattr(self._by_name.get(cfg.name, (None, None))[1], "cached_tools", None) or []
                known = [t.name for t in cached] + list(cfg.tool_approval) + list(cfg.deny_tools)
                return cfg, next((n for n in known if qualified_name(cfg.name, n) == tool), part)
        return None

    def _needs_approval(self, cfg: McpServerConfig) -> Any:
        def needs_approval(ctx: Any, _agent: Any, tool: Any) -> bool:
            runtime = getattr(ctx, "context", None)
            runtime = runtime if isinstance(runtime, ToolRuntime) else None
            return self.decide(qualified_name(cfg.name, tool.name), runtime).verdict != "allow"

        return needs_approval

    # ----------------------------------------------------------------- building

    def _refusal(self, cfg: McpServerConfig) -> str | None:
        if self.policy.tools.get("mcp") == "deny":
            return f"MCP server '{cfg.name}': tools.yaml sets mcp: deny, so no MCP server is started"
        if cfg.transport == "stdio" or self.settings.allow_net:
            return None
        parts = urlsplit(cfg.url or "")
        host = (parts.hostname or "").lower()
        with_port = f"{host}:{parts.port}" if parts.port else host
        if host in LOOPBACK_HOSTS or host in self.policy.allowed_hosts or with_port in self.policy.allowed_hosts:
            return None
        return (f"MCP server '{cfg.name}': host {host} is not in policies/network.yaml allowed_hosts and network "
                f"access is off (ALLOW_NET=false)")

    def _build(self, cfg: McpServerConfig) -> MCPServer:
        common: dict[str, Any] = {
            "name": cfg.name, "cache_tools_list": True, "client_session_timeout_seconds": cfg.timeout_s,
            "tool_filter": cfg.static_filter(self.policy), "require_approval": self._needs_approval(cfg),
            "failure_error_function": self._error_function(cfg)}
        server: MCPServer
        if cfg.transport == "stdio":
            env = {}
            for key, value in cfg.env.items():
                env[key] = _expand(value, f"env {key}")
                if _SECRET_NAME.match(key):
                    self._secrets.add(env[key])
            params: dict[str, Any] = {"command": cfg.command, "args": list(cfg.args)}
            if env:
                params["env"] = env
            if cfg.cwd:  # relative to the workspace, like every other path the operator configures for a project
                params["cwd"] = str(self.settings.workspace / os.path.expanduser(cfg.cwd))
            server = _Stdio(params, **common)  # type: ignore[arg-type]
        else:
            headers = {}
            for key, value in cfg.headers.items():
                headers[key] = _expand(value, f"header {key}")
                self._secrets.add(headers[key])
            if cfg.bearer_token_env:
                token = os.environ.get(cfg.bearer_token_env, "").strip()
                if not token:
                    raise _StartError(f"bearer_token_env names {cfg.bearer_token_env}, which is not set in "
                                      f"dev-agent's environment")
                self._secrets.add(token)
                headers["Authorization"] = f"Bearer {token}"
            http_params: dict[str, Any] = {"url": cfg.url, "headers": headers, "timeout": cfg.timeout_s}
            cls = _StreamableHttp if cfg.transport == "streamable_http" else _Sse
            server = cls(http_params, **common)  # type: ignore[arg-type]
        server._hub = self  # type: ignore[attr-defined]
        server._config = cfg  # type: ignore[attr-defined]
        return server

    def _error_function(self, cfg: McpServerConfig) -> Any:
        def tool_failed(_ctx: Any, error: Exception) -> str:
            """What the model reads when a call of this server fails: what happened and what to do."""
            text = self.scrub(_error_text(error))
            low = text.lower()
            if "connection closed" in low or "connection lost" in low or "not initialized" in low:
                advice = ("the server is not reachable (it stopped or crashed). Do not call its tools again in "
                          "this run; go on without them and tell the operator (`agent mcp health` shows it)")
            elif "timed out" in low or "timeout" in low:
                advice = (f"it did not answer within {cfg.timeout_s:g} s (timeout_s). Try a smaller request, or go "
                          f"on without this tool")
            else:
                advice = "read the message, fix the arguments if they are the problem, or go on without this tool"
            return f"ERROR: MCP server '{cfg.name}' failed: {text}. {advice}."

        return tool_failed

    def _failure(self, cfg: McpServerConfig, exc: BaseException, what: str) -> str:
        text = f"MCP server '{cfg.name}' {what}: {self.scrub(_error_text(exc))}"
        if cfg.transport == "stdio" and "connection closed" in text.lower():
            text += f" (the process ended; run `{cfg.target}` by hand to see why)"
        return text

    def scrub(self, text: str) -> str:
        """Mask every configured secret (tokens, header values, secret env values, the API key) in a text."""
        return self.audit.redact(text)

    def _record_call(self, cfg: McpServerConfig, tool: str, duration_ms: float, ok: bool, error: str | None) -> None:
        if error:
            self.status(cfg.name).last_error = f"{tool}: {error}"
        self.audit.record("mcp_call", server=cfg.name, tool=tool, qualified=qualified_name(cfg.name, tool),
                          duration_ms=round(duration_ms, 1), ok=ok, error=error)


def mcp_help_text() -> str:
    """How to configure MCP servers, for `agent mcp --help` and the TUI's /mcp."""
    return """MCP servers are declared in <state>/config/settings.yaml under mcp_servers:

  mcp_servers:
    - name: docs                     # tools appear as mcp_docs__<tool>
      transport: stdio               # stdio | streamable_http | sse
      command: npx
      args: [-y, some-mcp-server]
      env: {API_KEY: "${DOCS_API_KEY}"}
      approval: ask                  # ask | allow | deny (default ask)
      tool_approval: {search: allow} # per tool: ask | allow
      deny_tools: [delete_all]       # never offered to the model
      timeout_s: 10
    - name: tracker
      transport: streamable_http
      url: https://tracker.example.com/mcp
      bearer_token_env: TRACKER_TOKEN  # sent as Authorization: Bearer ..., never logged

Remote servers need ALLOW_NET=true or their host in policies/network.yaml allowed_hosts;
127.0.0.1, localhost and ::1 always count as local. tools.yaml can name a tool (mcp_docs__search: allow).
`agent mcp health [--json]` shows each server's state, latency, tools and last error.

Hosted MCP tools (HostedMCPTool, where the model provider connects to the server) need OpenAI's
Responses API; LM Studio and other Chat Completions servers cannot use them. dev-agent connects to
MCP servers itself and offers their tools as ordinary function tools instead."""


async def mcp_health_report(settings: Settings, *, as_json: bool) -> tuple[int, str]:
    """`agent mcp health`: start every server once, report it, stop them; exit 0 only when all are connected."""
    from core.policy import load_policies

    hub = McpHub(settings, load_policies(settings.policy_dir, allowed_commands=settings.allowed_commands,
                                         allow_net=settings.allow_net))
    if not hub.configs:
        message = f"no MCP servers configured (add mcp_servers to {settings.settings_file})"
        return 0, json.dumps([]) if as_json else message
    try:
        statuses = await hub.start()
    finally:
        await hub.close()
    code = 0 if all(s.healthy for s in statuses) else 1
    if as_json:
        return code, json.dumps([s.to_dict() for s in statuses], indent=2)
    healthy = sum(s.healthy for s in statuses)
    lines = [s.describe() for s in statuses]
    lines.append(f"{healthy} of {len(statuses)} MCP server(s) healthy")
    return code, "\n".join(lines)
