"""Endpoint discovery and error classification against the scripted server over real HTTP."""

from __future__ import annotations

import socket
from pathlib import Path

import openai
import pytest

from core.config import load_settings
from core.errors import EndpointError
from core.model import build_client, classify_error, discover, server_root
from tests.fakes.model_server import Fault, ScriptedModelServer


def settings_for(tmp_path: Path, url: str, **env: str):
    return load_settings({"HOME": str(tmp_path), "AGENT_STATE_DIR": str(tmp_path / "s"), "OPENAI_BASE_URL": url,
                          "AGENT_WORKSPACE": str(tmp_path), **env})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_server_root() -> None:
    assert server_root("http://h:1234/v1") == "http://h:1234"
    assert server_root("http://h:1234/v1/") == "http://h:1234"
    assert server_root("http://h/api") == "http://h/api"


async def test_discover_lmstudio_reports_model_and_loaded_context(tmp_path: Path) -> None:
    with ScriptedModelServer(model_id="qwen2.5-coder-7b", context_length=32768) as server:
        info = await discover(settings_for(tmp_path, server.url))
    assert info.models == ["qwen2.5-coder-7b"]
    assert info.model == "qwen2.5-coder-7b"
    assert info.server == "lmstudio"
    assert info.context_window == 32768
    assert info.warnings == []


async def test_small_context_window_warns_with_the_fix(tmp_path: Path) -> None:
    with ScriptedModelServer(model_id="tiny", context_length=4096) as server:
        info = await discover(settings_for(tmp_path, server.url))
    assert info.context_window == 4096
    assert any("4096 tokens" in w and "lms load tiny --context-length" in w for w in info.warnings)


async def test_non_lmstudio_server_has_no_context_info(tmp_path: Path) -> None:
    with ScriptedModelServer(lmstudio_api=False) as server:
        info = await discover(settings_for(tmp_path, server.url))
    assert info.server == "openai-compatible"
    assert info.context_window is None


async def test_unknown_configured_model_is_a_warning(tmp_path: Path) -> None:
    with ScriptedModelServer(model_id="a") as server:
        info = await discover(settings_for(tmp_path, server.url, AGENT_MODEL="b"))
    assert info.model == "b"
    assert any("AGENT_MODEL='b'" in w for w in info.warnings)


async def test_unreachable_endpoint_explains_lmstudio_network_setting(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(EndpointError) as info:
        await discover(settings_for(tmp_path, url))
    assert info.value.kind == "unreachable"
    assert "Serve on Local Network" in info.value.hint
    assert "lms server start --bind 0.0.0.0" in info.value.hint
    assert "/v1" in info.value.hint


async def test_wrong_key_and_missing_v1(tmp_path: Path) -> None:
    with ScriptedModelServer(require_key="right") as server:
        with pytest.raises(EndpointError) as auth:
            await discover(settings_for(tmp_path, server.url, OPENAI_API_KEY="wrong"))
        assert auth.value.kind == "auth"
        with pytest.raises(EndpointError) as missing:
            await discover(settings_for(tmp_path, server.url[: -len("/v1")], OPENAI_API_KEY="right"))
        assert missing.value.kind == "not_found"
        assert "/v1" in missing.value.hint


async def _call(tmp_path: Path, server: ScriptedModelServer) -> BaseException:
    settings = settings_for(tmp_path, server.url)
    client = build_client(settings).with_options(max_retries=0)
    with pytest.raises(openai.APIError) as info:
        await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    return info.value


@pytest.mark.parametrize(("fault", "kind", "hint_part"), [
    (Fault.no_models_loaded(), "model_not_loaded", "lms load"),
    (Fault.context_overflow(), "context_overflow", "--context-length"),
    (Fault.model_not_found("o4-mini"), "model_not_found", "AGENT_MODEL"),
    (Fault("http_500"), "server_error", "retry"),
])
async def test_endpoint_errors_are_classified(tmp_path: Path, fault: Fault, kind: str, hint_part: str) -> None:
    with ScriptedModelServer([fault]) as server:
        exc = await _call(tmp_path, server)
        err = classify_error(exc, settings_for(tmp_path, server.url))
    assert err.kind == kind
    assert hint_part in err.hint


async def test_connection_refused_is_unreachable(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, f"http://127.0.0.1:{free_port()}/v1")
    client = build_client(settings).with_options(max_retries=0)
    with pytest.raises(openai.APIConnectionError) as info:
        await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert classify_error(info.value, settings).kind == "unreachable"


def test_normalize_arguments_fills_defaults_and_drops_unknown_keys() -> None:
    from core.model import normalize_arguments

    schema = {"properties": {"command": {"type": "string"},
                             "timeout_s": {"anyOf": [{"type": "number"}, {"type": "null"}]},
                             "replace_all": {"type": "boolean", "default": False}}}
    import json

    assert json.loads(normalize_arguments('{"command": "ls", "extra": 1}', schema)) == {
        "command": "ls", "timeout_s": None, "replace_all": False}
    complete = '{"command": "ls", "timeout_s": 5, "replace_all": true}'
    assert normalize_arguments(complete, schema) == complete
    assert normalize_arguments('{"command": "ls"', schema) == '{"command": "ls"', "malformed JSON is left alone"
