"""MCP against real MCP servers (stdio subprocess, Streamable HTTP / SSE on 127.0.0.1) and the scripted model."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from agents import Agent, Runner

from core.agents import AGENT_MCP_CONFIG
from core.config import Settings, load_settings, shipped_policy_dir
from core.engine import Engine
from core.errors import ConfigError
from core.events import Event
from core.mcp import McpHub, load_mcp_configs, mcp_health_report, qualified_name
from core.model import build_client, build_model
from core.policy import load_policies
from core.policy_types import PolicySet
from core.session_log import SessionStore
from tests.fakes.mcp_servers import HttpMcpServer, stdio_entry
from tests.fakes.model_server import Reply, ScriptedModelServer, ToolCall

TOKEN = "sekrit-mcp-token-4f9a2c"


@pytest.fixture
def model_server() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer(model_id="scripted-model") as s:
        yield s


@pytest.fixture
def http_server() -> Iterator[HttpMcpServer]:
    with HttpMcpServer("streamable_http", token=TOKEN) as s:
        yield s


@pytest.fixture
def make_settings(state_dir: Path, workspace: Path, model_server: ScriptedModelServer) -> Callable[..., Settings]:
    def factory(servers: list[dict[str, Any]], **env: str) -> Settings:
        config = state_dir / "config"
        config.mkdir(exist_ok=True)
        (config / "settings.yaml").write_text(yaml.safe_dump({"mcp_servers": servers}))
        return load_settings({"HOME": str(state_dir), "OPENAI_BASE_URL": model_server.url, "OPENAI_API_KEY": "k",
                              "AGENT_WORKSPACE": str(workspace), "AGENT_STATE_DIR": str(state_dir),
                              "AGENT_REVIEW_ROUNDS": "0", **env})
    return factory


def policy_for(settings: Settings) -> PolicySet:
    return load_policies(shipped_policy_dir(), allow_net=settings.allow_net)


@pytest.fixture
async def make_hub(make_settings: Callable[..., Settings]) -> AsyncIterator[Callable[..., Any]]:
    hubs: list[McpHub] = []

    async def factory(servers: list[dict[str, Any]], *, policy: PolicySet | None = None, **env: str) -> McpHub:
        settings = make_settings(servers, **env)
        hub = McpHub(settings, policy or policy_for(settings))
        hubs.append(hub)
        await hub.start()
        return hub

    yield factory
    for hub in hubs:
        await hub.close()


@pytest.fixture
async def make_engine(make_settings: Callable[..., Settings], state_dir: Path, workspace: Path,
                      model_server: ScriptedModelServer) -> AsyncIterator[Callable[..., Any]]:
    """An engine given an MCP hub through the integration seam: the engine starts and closes the hub."""
    engines: list[Engine] = []
    hubs: list[McpHub] = []

    async def factory(servers: list[dict[str, Any]], **env: str) -> Engine:
        settings = make_settings(servers, **env)
        hub = McpHub(settings, policy_for(settings))
        hubs.append(hub)
        session = SessionStore(state_dir).create(workspace=workspace, model=None, base_url=model_server.url)
        engine = Engine(settings, session, client="test", mcp_hub=hub)  # type: ignore[call-arg]
        engines.append(engine)
        await engine.start()
        return engine

    yield factory
    for engine in engines:
        await engine.close()
    for hub in hubs:  # close() is idempotent: this only matters when a test failed before the engine closed it
        await hub.close()


def of(engine: Engine, kind: str) -> list[Event]:
    return [e for e in engine.history if e.type == kind]


def offered_tools(request: dict[str, Any]) -> list[str]:
    return [t["function"]["name"] for t in request.get("tools", [])]


def tool_messages(request: dict[str, Any]) -> list[str]:
    return [json.dumps(m.get("content")) for m in request["messages"] if m.get("role") == "tool"]


def audit_entries(state_dir: Path, kind: str) -> list[dict[str, Any]]:
    entries = []
    for path in sorted((state_dir / "audit").glob("*.jsonl")):
        entries += [e for line in path.read_text().splitlines() if (e := json.loads(line))["kind"] == kind]
    return entries


def pid_entry(name: str, tmp_path: Path, **extra: Any) -> tuple[dict[str, Any], Path]:
    pid_file = tmp_path / f"{name}.pid"
    return stdio_entry(name, env={"FAKE_MCP_PID_FILE": str(pid_file)}, **extra), pid_file


# ----------------------------------------------------------------- configuration


@pytest.mark.parametrize(("entry", "where", "fix"), [
    ({"name": "a", "transport": "stdio"}, "mcp_servers[1].command", "command"),
    ({"name": "a", "transport": "ftp", "command": "x"}, "mcp_servers[1].transport", "stdio, streamable_http or sse"),
    ({"name": "a", "transport": "streamable_http"}, "mcp_servers[1].url", "http"),
    ({"name": "a", "transport": "sse", "url": "ftp://host/sse"}, "mcp_servers[1].url", "http"),
    ({"name": "a", "transport": "stdio", "command": "x", "approval": "sometimes"}, "mcp_servers[1].approval",
     "ask, allow or deny"),
    ({"name": "a", "transport": "stdio", "command": "x", "tool_approval": {"rm": "deny"}},
     "mcp_servers[1].tool_approval", "ask or allow"),
    ({"name": "a", "transport": "streamable_http", "url": "http://h/mcp", "bearer_token_env": "Bearer abc"},
     "mcp_servers[1].bearer_token_env", "environment variable"),
    ({"name": "a b", "transport": "stdio", "command": "x"}, "mcp_servers[1].name", "letters"),
    ({"name": "a", "transport": "stdio", "comand": "x"}, "mcp_servers[1].comand", "see README"),
    ({"name": "a", "transport": "stdio", "command": "x", "timeout_s": 0}, "mcp_servers[1].timeout_s", "seconds"),
    ({"name": "ok", "transport": "stdio", "command": "x"}, "mcp_servers[1].name", "own name"),
])
def test_a_bad_entry_is_a_config_error_naming_the_field_and_the_fix(entry: dict[str, Any], where: str,
                                                                    fix: str) -> None:
    good = {"name": "ok", "transport": "stdio", "command": "x"}
    with pytest.raises(ConfigError) as info:
        load_mcp_configs([good, entry])
    assert info.value.message.startswith(where + ":")
    assert fix in info.value.hint


def test_header_values_are_never_echoed_in_config_errors() -> None:
    entry = {"name": "a", "transport": "streamable_http", "url": "http://h/mcp", "headers": {"X-Key": ["s3cr3t"]}}
    with pytest.raises(ConfigError) as info:
        load_mcp_configs([entry])
    assert "mcp_servers[0].headers" in info.value.message and "s3cr3t" not in str(info.value)


async def test_the_hub_rejects_bad_settings_at_construction(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings([{"name": "x", "transport": "sse"}])
    with pytest.raises(ConfigError, match=r"mcp_servers\[0\]\.url"):
        McpHub(settings, policy_for(settings))


# ----------------------------------------------------------------- discovery and filtering


async def test_tools_of_every_transport_are_discovered_with_server_prefixed_names(
        make_hub: Callable[..., Any], http_server: HttpMcpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_TOKEN_VAR", TOKEN)
    with HttpMcpServer("sse") as sse_server:
        hub = await make_hub([
            stdio_entry("local", deny_tools=["delete_all"]),
            {"name": "remote", "transport": "streamable_http", "url": http_server.url,
             "bearer_token_env": "FAKE_TOKEN_VAR", "allow_tools": ["echo", "add"]},
            {"name": "legacy", "transport": "sse", "url": sse_server.url, "approval": "deny",
             "tool_approval": {"echo": "allow"}},
        ])
        states = {s.name: (s.state, s.tools) for s in hub.statuses}
        assert states == {
            "local": ("connected", ["mcp_local__echo", "mcp_local__add", "mcp_local__slow"]),
            "remote": ("connected", ["mcp_remote__echo", "mcp_remote__add"]),
            "legacy": ("connected", ["mcp_legacy__echo"]),
        }
        agent = Agent(name="probe", mcp_servers=hub.servers, mcp_config=AGENT_MCP_CONFIG)
        names = sorted(t.name for t in await agent.get_mcp_tools(None))  # type: ignore[arg-type]
        assert names == sorted(n for s in hub.statuses for n in s.tools)
        assert qualified_name("local", "echo") in names


async def test_a_denied_tool_is_never_offered_to_the_model(
        make_hub: Callable[..., Any], model_server: ScriptedModelServer,
        make_settings: Callable[..., Settings]) -> None:
    base = load_policies(shipped_policy_dir())
    policy = dataclasses.replace(base, tools={**base.tools, "mcp_local__slow": "deny"})
    hub = await make_hub([stdio_entry("local", deny_tools=["delete_all"])], policy=policy)
    model_server.add(Reply(text="Nothing to do."))
    settings = make_settings([])
    model = build_model(settings, build_client(settings), "scripted-model")
    agent = Agent(name="probe", model=model, mcp_servers=hub.servers, mcp_config=AGENT_MCP_CONFIG)
    await Runner.run(agent, "hi")
    assert sorted(offered_tools(model_server.requests[0])) == ["mcp_local__add", "mcp_local__echo"]


def test_approval_order_tools_yaml_line_then_tool_approval_then_server_approval(
        make_settings: Callable[..., Settings]) -> None:
    settings = make_settings([stdio_entry("local", approval="allow", tool_approval={"delete_all": "ask"}),
                              stdio_entry("strict")])
    base = policy_for(settings)
    hub = McpHub(settings, dataclasses.replace(base, tools={**base.tools, "mcp": "allow", "mcp_local__add": "ask"}))
    verdicts = {tool: hub.decide(tool).verdict for tool in (
        "mcp_local__echo", "mcp_local__delete_all", "mcp_local__add", "mcp_strict__echo", "mcp_other__echo")}
    assert verdicts == {"mcp_local__echo": "allow", "mcp_local__delete_all": "ask", "mcp_local__add": "ask",
                        "mcp_strict__echo": "ask", "mcp_other__echo": "allow"}
    assert "settings.yaml mcp_servers 'strict'" in hub.decide("mcp_strict__echo").reason


# ----------------------------------------------------------------- network policy


async def test_remote_hosts_are_refused_without_net_and_loopback_is_local(
        make_hub: Callable[..., Any], http_server: HttpMcpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_TOKEN_VAR", TOKEN)
    hub = await make_hub([
        {"name": "far", "transport": "streamable_http", "url": "https://example.com/mcp"},
        {"name": "near", "transport": "streamable_http", "url": http_server.url, "headers": {
            "Authorization": "Bearer ${FAKE_TOKEN_VAR}"}},
    ], ALLOW_NET="false")
    far, near = hub.statuses
    assert far.state == "refused"
    assert far.last_error == ("MCP server 'far': host example.com is not in policies/network.yaml allowed_hosts "
                              "and network access is off (ALLOW_NET=false)")
    assert near.state == "connected" and [s.name for s in hub.servers] == ["near"]


async def test_an_allowed_host_is_tried_and_a_failed_connect_is_recorded(make_hub: Callable[..., Any],
                                                                         make_settings: Callable[..., Settings]
                                                                         ) -> None:
    policy = dataclasses.replace(load_policies(shipped_policy_dir()), allowed_hosts=("127.0.0.2",))
    hub = await make_hub([{"name": "down", "transport": "streamable_http", "url": "http://127.0.0.2:9/mcp"},
                          {"name": "gone", "transport": "stdio", "command": "no-such-mcp-binary"},
                          stdio_entry("local")], policy=policy)
    down, gone, local = hub.statuses
    assert down.state == "failed" and "could not start" in (down.last_error or "")
    assert gone.state == "failed" and "no-such-mcp-binary" in (gone.last_error or "")
    assert local.state == "connected" and [s.name for s in hub.servers] == ["local"]


async def test_mcp_deny_in_tools_yaml_refuses_every_server(make_hub: Callable[..., Any]) -> None:
    base = load_policies(shipped_policy_dir())
    hub = await make_hub([stdio_entry("local")], policy=dataclasses.replace(base, tools={**base.tools, "mcp": "deny"}))
    assert [(s.state, s.last_error) for s in hub.statuses] == [
        ("refused", "MCP server 'local': tools.yaml sets mcp: deny, so no MCP server is started")]
    assert hub.servers == []


async def test_a_missing_token_variable_fails_that_server_only(make_hub: Callable[..., Any],
                                                               http_server: HttpMcpServer) -> None:
    hub = await make_hub([{"name": "remote", "transport": "streamable_http", "url": http_server.url,
                           "bearer_token_env": "NOT_SET_ANYWHERE"}, stdio_entry("local")])
    remote, local = hub.statuses
    assert remote.state == "failed" and "NOT_SET_ANYWHERE" in (remote.last_error or "")
    assert local.state == "connected"


# ----------------------------------------------------------------- health


async def test_health_report_text_and_json(make_settings: Callable[..., Settings],
                                           http_server: HttpMcpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_TOKEN_VAR", TOKEN)
    servers = [stdio_entry("local"), {"name": "remote", "transport": "streamable_http", "url": http_server.url,
                                      "bearer_token_env": "FAKE_TOKEN_VAR"}]
    code, text = await mcp_health_report(make_settings(servers), as_json=False)
    assert code == 0, text
    assert "local (stdio: " in text and "remote (streamable_http: http://127.0.0.1:" in text
    assert "connected" in text and "4 tool(s)" in text and "2 of 2 MCP server(s) healthy" in text

    servers.append({"name": "far", "transport": "sse", "url": "https://example.com/sse"})
    code, out = await mcp_health_report(make_settings(servers), as_json=True)
    report = json.loads(out)
    assert code == 1
    assert [(r["name"], r["state"]) for r in report] == [("local", "connected"), ("remote", "connected"),
                                                         ("far", "refused")]
    assert report[0]["tool_count"] == 4 and report[0]["latency_ms"] is not None
    assert "ALLOW_NET=false" in report[2]["last_error"]
    assert TOKEN not in out + text


async def test_health_report_without_servers(make_settings: Callable[..., Settings], state_dir: Path) -> None:
    code, text = await mcp_health_report(make_settings([]), as_json=False)
    assert code == 0
    assert text == f"no MCP servers configured (add mcp_servers to {state_dir}/config/settings.yaml)"


async def test_health_marks_a_killed_server_dead(make_hub: Callable[..., Any], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    pid_file = tmp_path / "server.pid"
    monkeypatch.setenv("PID_PATH", str(pid_file))  # reaches the server through ${PID_PATH} in env
    hub = await make_hub([stdio_entry("local", env={"FAKE_MCP_PID_FILE": "${PID_PATH}"})])
    assert [s.state for s in await hub.health()] == ["connected"]
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    (status,) = await hub.health()
    assert status.state == "dead" and "does not answer" in (status.last_error or "")


# ----------------------------------------------------------------- engine runs (need the engine's mcp_hub seam)


async def test_an_approved_mcp_call_runs_and_is_audited(make_engine: Callable[..., Any],
                                                        model_server: ScriptedModelServer, state_dir: Path) -> None:
    model_server.add(Reply(tool_calls=[ToolCall("mcp_local__add", {"a": 2, "b": 3})]), Reply(text="It is 5."))
    engine = await make_engine([stdio_entry("local", deny_tools=["delete_all"])])
    await engine.submit("add 2 and 3")
    await engine.wait_idle()
    assert "mcp_local__delete_all" not in offered_tools(model_server.requests[0])
    assert "mcp_local__add" in offered_tools(model_server.requests[0])
    (request,) = engine.pending_approvals
    assert request.tool == "mcp_local__add" and request.kind == "mcp"
    await engine.approve(request.call_id)
    await engine.wait_idle()
    finished = of(engine, "tool_call_finished")[-1]
    assert finished.status == "ok" and "5" in finished.output_preview
    assert any('"5"' in m for m in tool_messages(model_server.requests[-1]))
    (call,) = audit_entries(state_dir, "mcp_call")
    assert call["server"] == "local" and call["tool"] == "add" and call["ok"] is True and call["duration_ms"] >= 0
    assert of(engine, "run_finished")[-1].status == "done"


async def test_a_rejected_mcp_call_tells_the_model_why(make_engine: Callable[..., Any],
                                                       model_server: ScriptedModelServer, state_dir: Path) -> None:
    model_server.add(Reply(tool_calls=[ToolCall("mcp_local__echo", {"text": "hi"})]), Reply(text="Understood."))
    engine = await make_engine([stdio_entry("local")])
    await engine.submit("echo hi")
    await engine.wait_idle()
    (request,) = engine.pending_approvals
    await engine.reject(request.call_id, "not with this server")
    await engine.wait_idle()
    assert any("not with this server" in m for m in tool_messages(model_server.requests[-1]))
    assert of(engine, "tool_call_finished")[-1].status == "rejected"
    assert audit_entries(state_dir, "mcp_call") == []


async def test_an_always_allow_rule_covers_the_next_call_of_that_tool(make_engine: Callable[..., Any],
                                                                      model_server: ScriptedModelServer) -> None:
    model_server.add(Reply(tool_calls=[ToolCall("mcp_local__echo", {"text": "one"})]),
                     Reply(tool_calls=[ToolCall("mcp_local__echo", {"text": "two"})]), Reply(text="Echoed twice."))
    engine = await make_engine([stdio_entry("local")])
    await engine.submit("echo twice")
    await engine.wait_idle()
    await engine.approve(engine.pending_approvals[0].call_id, always=True)
    await engine.wait_idle()
    assert len(of(engine, "approval_requested")) == 1
    assert [f.status for f in of(engine, "tool_call_finished")] == ["ok", "ok"]


@pytest.mark.parametrize("transport", ["stdio", "streamable_http"])
async def test_a_server_that_dies_mid_session_fails_the_call_and_the_run_goes_on(
        transport: str, make_engine: Callable[..., Any], model_server: ScriptedModelServer, tmp_path: Path) -> None:
    http = HttpMcpServer("streamable_http").start() if transport == "streamable_http" else None
    try:
        if http is not None:
            entry = {"name": "svc", "transport": "streamable_http", "url": http.url, "approval": "allow"}
        else:
            entry, pid_file = pid_entry("svc", tmp_path, approval="allow")
        model_server.add(Reply(tool_calls=[ToolCall("mcp_svc__echo", {"text": "first"})]), Reply(text="ok"),
                         Reply(tool_calls=[ToolCall("mcp_svc__echo", {"text": "second"})]), Reply(text="It broke."))
        engine = await make_engine([entry])
        await engine.submit("echo first")
        await engine.wait_idle()
        assert of(engine, "tool_call_finished")[-1].status == "ok"
        if http is not None:
            http.stop()
        else:
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
        await engine.submit("echo second")
        await engine.wait_idle()
    finally:
        if http is not None:
            http.stop()
    finished = of(engine, "tool_call_finished")[-1]
    assert finished.status == "failed" and "not reachable" in finished.output_preview
    assert any("not reachable" in m for m in tool_messages(model_server.requests[-1]))
    assert of(engine, "run_finished")[-1].status == "done"
    assert not of(engine, "approval_requested")


async def test_a_slow_tool_times_out_with_a_readable_error(make_engine: Callable[..., Any],
                                                           model_server: ScriptedModelServer, state_dir: Path) -> None:
    model_server.add(Reply(tool_calls=[ToolCall("mcp_local__slow", {"seconds": 30})]), Reply(text="Too slow."))
    engine = await make_engine([stdio_entry("local", approval="allow", timeout_s=0.5)])
    await engine.submit("be slow")
    await engine.wait_idle()
    finished = of(engine, "tool_call_finished")[-1]
    assert finished.status == "failed" and "did not answer within 0.5 s" in finished.output_preview
    (call,) = audit_entries(state_dir, "mcp_call")
    assert call["ok"] is False and call["tool"] == "slow"


async def test_the_bearer_token_never_reaches_the_log_or_the_audit(
        make_engine: Callable[..., Any], model_server: ScriptedModelServer, http_server: HttpMcpServer,
        state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_TOKEN_VAR", TOKEN)
    model_server.add(Reply(tool_calls=[ToolCall("mcp_remote__echo", {"text": "hello"})]), Reply(text="Done."))
    engine = await make_engine([{"name": "remote", "transport": "streamable_http", "url": http_server.url,
                                 "bearer_token_env": "FAKE_TOKEN_VAR", "tool_approval": {"echo": "allow"}}])
    await engine.submit("echo")
    await engine.wait_idle()
    # The server answers 401 without the token, so a successful call proves the token was sent.
    assert of(engine, "tool_call_finished")[-1].status == "ok"
    assert audit_entries(state_dir, "mcp_call")[0]["ok"] is True
    written = [p for p in state_dir.rglob("*") if p.is_file()]
    assert any("audit" in p.parts for p in written) and any(p.name == "events.jsonl" for p in written)
    assert [p for p in written if TOKEN.encode() in p.read_bytes()] == []
