"""Settings: defaults, settings.yaml, environment precedence, and errors that name the variable and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import load_settings, shipped_policy_dir
from core.errors import ConfigError


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"HOME": str(tmp_path), "AGENT_STATE_DIR": str(tmp_path / "state"), **extra}


def test_defaults_follow_the_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings(env_for(tmp_path))
    assert s.base_url == "http://host.docker.internal:1234/v1"
    assert s.api_key.get_secret_value() == "lm-studio"
    assert s.model is None
    assert s.workspace == tmp_path.resolve()
    assert s.allow_net is False
    assert s.allowed_commands == ()
    assert s.approval == "ask"
    assert s.use_chat_completions is True
    assert s.policy_dir == shipped_policy_dir()
    assert (s.policy_dir / "tools.yaml").name == "tools.yaml"


def test_xdg_state_home_default(tmp_path: Path) -> None:
    s = load_settings({"HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "xdg")})
    assert s.state_dir == tmp_path / "xdg" / "dev-agent"


def test_environment_values_are_parsed(tmp_path: Path, workspace: Path) -> None:
    s = load_settings(env_for(tmp_path, OPENAI_BASE_URL="http://127.0.0.1:9/v1/", ALLOW_NET="yes",
                              AGENT_ALLOWED_COMMANDS="make test, npm run ,", AGENT_APPROVAL="full-auto",
                              AGENT_WORKSPACE=str(workspace), AGENT_MODEL="qwen", AGENT_MAX_TURNS="7",
                              AGENT_FORCE_CHAT_COMPLETIONS="false"))
    assert s.base_url == "http://127.0.0.1:9/v1"
    assert s.allow_net is True
    assert s.allowed_commands == ("make test", "npm run")
    assert s.approval == "full-auto"
    assert s.workspace == workspace.resolve()
    assert s.max_turns == 7
    assert s.use_chat_completions is False


def test_openai_host_uses_responses_unless_forced(tmp_path: Path) -> None:
    s = load_settings(env_for(tmp_path, OPENAI_BASE_URL="https://api.openai.com/v1"))
    assert s.use_chat_completions is False
    forced = load_settings(env_for(tmp_path, OPENAI_BASE_URL="https://api.openai.com/v1",
                                   AGENT_FORCE_CHAT_COMPLETIONS="true"))
    assert forced.use_chat_completions is True


@pytest.mark.parametrize(("var", "value", "fix"), [
    ("AGENT_APPROVAL", "yolo", "use one of: ask, auto-edit, full-auto"),
    ("ALLOW_NET", "maybe", "use true or false"),
    ("OPENAI_BASE_URL", "localhost:1234", "ending in /v1"),
    ("AGENT_WORKSPACE", "/definitely/not/here", "existing directory"),
    ("AGENT_MAX_TURNS", "0", "whole number"),
    ("OPENAI_API_KEY", "  ", "non-empty"),
])
def test_wrong_values_name_the_variable_and_the_fix(tmp_path: Path, var: str, value: str, fix: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env_for(tmp_path, **{var: value}))
    text = str(info.value)
    assert var in text
    assert fix in text


def test_settings_yaml_is_read_and_env_wins(tmp_path: Path) -> None:
    config = tmp_path / "state" / "config"
    config.mkdir(parents=True)
    (config / "settings.yaml").write_text("model: from-yaml\napproval: auto-edit\nAGENT_MAX_TURNS: 9\n")
    s = load_settings(env_for(tmp_path))
    assert (s.model, s.approval, s.max_turns) == ("from-yaml", "auto-edit", 9)
    s2 = load_settings(env_for(tmp_path, AGENT_MODEL="from-env"))
    assert s2.model == "from-env"
    s3 = load_settings(env_for(tmp_path, AGENT_MODEL="from-env"), {"model": "from-cli"})
    assert s3.model == "from-cli"


def test_bad_settings_yaml_names_file_line_and_key(tmp_path: Path) -> None:
    config = tmp_path / "state" / "config"
    config.mkdir(parents=True)
    path = config / "settings.yaml"
    path.write_text("model: x\nbogus_setting: 1\n")
    with pytest.raises(ConfigError, match="unknown setting 'bogus_setting'"):
        load_settings(env_for(tmp_path))
    path.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match=r"settings\.yaml:\d+: not valid YAML"):
        load_settings(env_for(tmp_path))
    path.write_text("approval: sometimes\n")
    with pytest.raises(ConfigError, match=r"approval \(in .*settings\.yaml\)"):
        load_settings(env_for(tmp_path))


def test_public_dict_never_contains_the_key(tmp_path: Path) -> None:
    s = load_settings(env_for(tmp_path, OPENAI_API_KEY="sk-very-secret"))
    assert "sk-very-secret" not in repr(s.public_dict())
    assert "sk-very-secret" not in repr(s)
