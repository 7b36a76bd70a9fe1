"""Settings from the environment (SPEC section 3), an optional settings.yaml, and command-line flags."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from core.errors import ConfigError

ApprovalMode = Literal["ask", "auto-edit", "full-auto"]
APPROVAL_MODES: tuple[str, ...] = ("ask", "auto-edit", "full-auto")

DEFAULT_BASE_URL = "http://host.docker.internal:1234/v1"


def shipped_policy_dir() -> Path:
    """The policies shipped with the package: next to the source in a checkout, inside `core` in a wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "shipped_policies", here.parent / "policies"):
        if (candidate / "tools.yaml").is_file():
            return candidate
    return here.parent / "policies"


def default_state_dir(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "dev-agent"


# Environment variable -> (settings field, how to fix a bad value).
ENV_VARS: dict[str, tuple[str, str]] = {
    "OPENAI_BASE_URL": ("base_url", "set it to an http(s) URL ending in /v1, e.g. http://host.docker.internal:1234/v1"),
    "OPENAI_API_KEY": ("api_key", "set any non-empty value (LM Studio accepts 'lm-studio')"),
    "AGENT_MODEL": ("model", "set a model id listed by GET /v1/models, or unset it to use the first one"),
    "AGENT_WORKSPACE": ("workspace", "point it at an existing directory"),
    "AGENT_STATE_DIR": ("state_dir", "point it at a writable directory"),
    "AGENT_TOOLS_DIR": ("tools_dir", "point it at the directory holding installed tools (its bin/ goes on PATH)"),
    "AGENT_POLICY_DIR": ("policy_dir", "point it at a directory with tools.yaml, paths.yaml and network.yaml"),
    "ALLOW_NET": ("allow_net", "use true or false"),
    "AGENT_ALLOWED_COMMANDS": ("allowed_commands", "use comma-separated command prefixes, e.g. 'make test,npm run'"),
    "AGENT_APPROVAL": ("approval", "use one of: ask, auto-edit, full-auto"),
    "AGENT_FORCE_CHAT_COMPLETIONS": ("force_chat_completions", "use auto, true or false"),
    "AGENT_MAX_TURNS": ("max_turns", "use a whole number of model turns per run, e.g. 50"),
    "AGENT_MAX_TOKENS": ("max_tokens", "use a whole number of tokens per model reply, e.g. 4096"),
    "AGENT_REVIEW_ROUNDS": ("review_rounds", "use a whole number from 0 (no review) to 5"),
    "AGENT_TEST_COMMAND": ("test_command", "use the command that runs the project's tests, e.g. 'pytest -q'"),
    "AGENT_TEMPERATURE": ("temperature", "use a number from 0 to 2"),
    "AGENT_REQUEST_TIMEOUT": ("request_timeout_s", "use seconds to wait for one model reply, e.g. 600"),
    "AGENT_PLANNER": ("planner", "use true (a planner agent writes the plan first) or false"),
}
FIELD_TO_ENV = {field: env for env, (field, _) in ENV_VARS.items()}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse_bool(value: Any) -> Any:
    if isinstance(value, str):
        low = value.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    return value


class Settings(BaseModel):
    """Everything the core needs to know, validated once at startup."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = DEFAULT_BASE_URL
    api_key: SecretStr = SecretStr("lm-studio")
    model: str | None = None
    workspace: Path = Field(default_factory=Path.cwd)
    state_dir: Path
    tools_dir: Path = Path("/tools")
    policy_dir: Path = Field(default_factory=shipped_policy_dir)
    allow_net: bool = False
    allowed_commands: tuple[str, ...] = ()
    approval: ApprovalMode = "ask"
    force_chat_completions: Literal["auto", "true", "false"] = "auto"
    max_turns: int = Field(default=50, ge=1, le=1000)
    max_tokens: int = Field(default=4096, ge=16, le=1_000_000)
    review_rounds: int = Field(default=2, ge=0, le=5)
    test_command: str | None = None
    temperature: float = Field(default=0.2, ge=0, le=2)
    # Off by default: on a local model every extra agent call costs a full prefill; the executor plans
    # with update_plan as its first step instead.
    planner: bool = False
    # Long by default: a local model may JIT-load and prefill slowly on CPU before the first token.
    request_timeout_s: float = Field(default=600.0, ge=1, le=86_400)
    mcp_servers: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        v = v.strip()
        if not (v.startswith("http://") or v.startswith("https://")) or len(v) < 10:
            raise ValueError("must be an http:// or https:// URL")
        return v.rstrip("/")

    @field_validator("api_key")
    @classmethod
    def _key(cls, v: SecretStr) -> SecretStr:
        if not v.get_secret_value().strip():
            raise ValueError("must not be empty (LM Studio accepts any value, e.g. 'lm-studio')")
        return v

    @field_validator("model", "test_command")
    @classmethod
    def _blank_is_none(cls, v: str | None) -> str | None:
        return v.strip() or None if isinstance(v, str) else v

    @field_validator("allowed_commands", mode="before")
    @classmethod
    def _split_commands(cls, v: Any) -> Any:
        if isinstance(v, str):
            return tuple(p.strip() for p in v.split(",") if p.strip())
        return v

    @field_validator("allow_net", "planner", mode="before")
    @classmethod
    def _bool(cls, v: Any) -> Any:
        return _parse_bool(v)

    @field_validator("force_chat_completions", mode="before")
    @classmethod
    def _tri(cls, v: Any) -> Any:
        v = _parse_bool(v)
        if isinstance(v, bool):
            return "true" if v else "false"
        return v.strip().lower() if isinstance(v, str) else v

    @field_validator("workspace", "state_dir", "tools_dir", "policy_dir", mode="before")
    @classmethod
    def _path(cls, v: Any) -> Any:
        if isinstance(v, str):
            if not v.strip():
                raise ValueError("must not be empty")
            return Path(os.path.expanduser(v.strip()))
        return v

    @field_validator("workspace")
    @classmethod
    def _workspace_exists(cls, v: Path) -> Path:
        v = v.resolve()
        if not v.is_dir():
            raise ValueError(f"{v} is not an existing directory")
        return v

    @property
    def uses_openai_platform(self) -> bool:
        return "api.openai.com" in self.base_url

    @property
    def use_chat_completions(self) -> bool:
        if self.force_chat_completions == "true":
            return True
        if self.force_chat_completions == "false":
            return False
        return not self.uses_openai_platform

    @property
    def settings_file(self) -> Path:
        return self.state_dir / "config" / "settings.yaml"

    def public_dict(self) -> dict[str, Any]:
        """The settings as shown to an operator: the API key is never included."""
        data = self.model_dump(mode="json")
        data["api_key"] = "***" if self.api_key.get_secret_value() else ""
        return data


def _describe(field: str, source: str) -> str:
    env = FIELD_TO_ENV.get(field)
    if source == "env" and env:
        return env
    if source == "cli":
        return f"--{field.replace('_', '-')}"
    return f"{field} (in {source})"


def _read_settings_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})",
                          hint="fix the syntax or remove the file") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", hint="check the file's permissions") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of setting names to values",
                          hint="write one 'name: value' per line, e.g. 'model: qwen2.5-coder-7b-instruct'")
    known = set(Settings.model_fields)
    aliases = {env.lower(): field for env, (field, _) in ENV_VARS.items()}
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = aliases.get(str(key).lower(), str(key))
        if name not in known:
            raise ConfigError(f"{path}: unknown setting {key!r}",
                              hint=f"use one of: {', '.join(sorted(known - {'state_dir'}))}")
        out[name] = value
    return out


def load_settings(env: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None) -> Settings:
    """Build the settings: defaults < settings.yaml (in the state dir) < environment < command-line overrides.

    Any invalid value raises ConfigError naming where the value came from and how to fix it.
    """
    env = os.environ if env is None else env
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    sources: dict[str, str] = {}
    values: dict[str, Any] = {}

    env_values: dict[str, Any] = {}
    for var, (field, _) in ENV_VARS.items():
        if var in env:
            env_values[field] = env[var]

    state_dir_raw = overrides.get("state_dir") or env_values.get("state_dir") or default_state_dir(env)
    state_dir = Path(os.path.expanduser(str(state_dir_raw)))
    settings_path = state_dir / "config" / "settings.yaml"
    for field, value in _read_settings_yaml(settings_path).items():
        values[field] = value
        sources[field] = str(settings_path)
    for field, value in env_values.items():
        values[field] = value
        sources[field] = "env"
    for field, value in overrides.items():
        values[field] = value
        sources[field] = "cli"
    values["state_dir"] = state_dir
    try:
        return Settings(**values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            source = sources.get(field, "default")
            env_name = FIELD_TO_ENV.get(field)
            fix = ENV_VARS[env_name][1] if env_name else "see README, section Configuration"
            msg = err["msg"].removeprefix("Value error, ")
            problems.append((f"{_describe(field, source)}: {msg} (got {values.get(field)!r})", fix))
        first_fix = problems[0][1]
        message = "; ".join(p for p, _ in problems)
        raise ConfigError(f"invalid setting: {message}", hint=first_fix) from None
