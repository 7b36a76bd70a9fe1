"""docker-compose.yaml and the offline override: valid against the Compose Specification, and saying what we need.

The schema is the Compose Specification's own `compose-spec.json` (github.com/compose-spec/compose-spec,
schema/compose-spec.json), as vendored by the check-jsonschema package (`check_jsonschema/builtin_schemas/
vendor/compose-spec.json`, test extra): no copy of it lives in this repository.
"""

from __future__ import annotations

import copy
import json
import re
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from core.config import ENV_VARS, load_settings
from tests.container.dockerfile_model import REPO, exec_form, image_env, load

BASE = REPO / "docker-compose.yaml"
OFFLINE = REPO / "docker-compose.offline.yaml"


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json")
                        .read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's `${VAR}`, `${VAR:-default}` and `${VAR-default}` interpolation, applied to every string."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        name, op, default = m.group(1), m.group(2), m.group(3) or ""
        if op == ":-":
            return env.get(name) or default
        if op == "-":
            return env.get(name, default)
        return env.get(name, "")

    return re.sub(r"\$\{(\w+)(?:(:?-)([^}]*))?\}", sub, value)


def merge(base: Any, override: Any) -> Any:
    """Compose's merge of an override file, for the keys our files use: mappings merge, sequences replace."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = copy.deepcopy(base)
        for key, value in override.items():
            out[key] = merge(base[key], value) if key in base else copy.deepcopy(value)
        return out
    return copy.deepcopy(override)


@pytest.mark.parametrize("path", [BASE, OFFLINE], ids=lambda p: p.name)
def test_compose_file_follows_the_compose_specification(path: Path, validator) -> None:
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(_load(path))]
    assert errors == []


def test_the_schema_rejects_what_compose_would_reject(validator) -> None:
    """The validation above can fail: a misspelt key and a wrong type are both errors."""
    broken = _load(BASE)
    service = broken["services"]["dev-agent"]
    service["extra_host"] = service.pop("extra_hosts")
    service["restart"] = ["unless-stopped"]
    assert len(list(validator.iter_errors(broken))) >= 2


def test_the_service_is_reachable_by_the_documented_commands() -> None:
    service = _load(BASE)["services"]["dev-agent"]
    assert service["container_name"] == "dev-agent"  # docker exec -it dev-agent agent-tui
    assert service["image"] == "dev-agent:latest"
    assert service["build"]["context"] == "."
    assert "host.docker.internal:host-gateway" in service["extra_hosts"]
    assert service["restart"] == "unless-stopped"
    assert service["init"] is False, "tini is already the ENTRYPOINT"
    assert service["stdin_open"] is True and service["tty"] is True


def test_build_args_are_the_dockerfile_user_ids_and_default_to_1000() -> None:
    args = _load(BASE)["services"]["dev-agent"]["build"]["args"]
    declared = {a.args.split("=")[0] for a in load().final.all("ARG")}
    assert set(args) == declared == {"UID", "GID"}
    assert interpolate(args, {}) == {"UID": "1000", "GID": "1000"}
    assert interpolate(args, {"HOST_UID": "501", "HOST_GID": "20"}) == {"UID": "501", "GID": "20"}


def test_environment_names_are_settings_and_defaults_match_the_image() -> None:
    environment = _load(BASE)["services"]["dev-agent"]["environment"]
    assert set(environment) <= set(ENV_VARS), "a misspelt name would be silently ignored by the app"
    assert {"OPENAI_BASE_URL", "OPENAI_API_KEY", "AGENT_MODEL", "AGENT_APPROVAL", "ALLOW_NET"} <= set(environment)
    defaults = interpolate(environment, {})
    image = image_env(load().final)
    for name, value in defaults.items():
        if name in image:
            assert value == image[name], f"{name}: compose default {value!r} differs from the image's {image[name]!r}"
    # The paths are the image's mount points, not something a user may move.
    assert not {"AGENT_WORKSPACE", "AGENT_STATE_DIR", "AGENT_TOOLS_DIR"} & set(environment)
    assert interpolate(environment, {"AGENT_MODEL": "qwen"})["AGENT_MODEL"] == "qwen"


def test_workspace_is_a_bind_mount_and_state_a_named_volume() -> None:
    compose = _load(BASE)
    mounts = {m["target"]: m for m in compose["services"]["dev-agent"]["volumes"]}
    workspace, state = mounts["/workspace"], mounts["/state"]
    assert workspace["type"] == "bind"
    assert interpolate(workspace["source"], {}) == "./workspace"
    assert interpolate(workspace["source"], {"WORKSPACE": "/home/me/project"}) == "/home/me/project"
    assert workspace["bind"]["create_host_path"] is False
    assert state == {"type": "volume", "source": "dev-agent-state", "target": "/state"}
    assert "dev-agent-state" in compose["volumes"]
    image = image_env(load().final)
    assert set(mounts) == {image["AGENT_WORKSPACE"], image["AGENT_STATE_DIR"]}


def test_resources_are_limited() -> None:
    service = interpolate(_load(BASE)["services"]["dev-agent"], {})
    limits = service["deploy"]["resources"]["limits"]
    assert float(limits["cpus"]) > 0 and re.fullmatch(r"\d+[kmg]", limits["memory"])
    assert service["pids_limit"] > 0


def test_offline_variant_cuts_the_network_but_not_the_model() -> None:
    merged = interpolate(merge(_load(BASE), _load(OFFLINE)), {})
    agent, gateway = merged["services"]["dev-agent"], merged["services"]["model-gateway"]
    # dev-agent is only on the internal network: no route to the internet, the LAN or the host.
    assert agent["networks"] == ["sandbox"]
    assert merged["networks"]["sandbox"]["internal"] is True
    assert agent["environment"]["ALLOW_NET"] == "false"
    # Its model endpoint is the gateway, which is on both networks and relays to LM Studio on the host.
    assert agent["environment"]["OPENAI_BASE_URL"] == "http://model-gateway:1234/v1"
    assert set(gateway["networks"]) == {"default", "sandbox"}
    assert "host.docker.internal:host-gateway" in gateway["extra_hosts"]
    assert gateway["image"] == agent["image"] and gateway["pull_policy"] == "never"
    command = gateway["command"]
    assert command[command.index("--listen") + 1] == "0.0.0.0:1234"
    assert command[command.index("--target") + 1] == "host.docker.internal:1234"
    # The script the gateway runs is one the image contains.
    script = command[1]
    copied = [ins.args.split() for ins in load().final.all("COPY")]
    assert any(words[-1] == script for words in copied), f"{script} is not copied into the image"
    assert exec_form(load().final.last("ENTRYPOINT").args)[0] == "/usr/bin/tini"


def test_the_default_environment_is_accepted_by_the_app(tmp_path: Path) -> None:
    """Compose passes unset options as empty strings (`${AGENT_MODEL:-}`): the settings must read them as unset."""
    env = {**image_env(load().final), **interpolate(_load(BASE)["services"]["dev-agent"]["environment"], {})}
    env.update(AGENT_WORKSPACE=str(tmp_path), AGENT_STATE_DIR=str(tmp_path / "state"))
    settings = load_settings(env)
    assert settings.model is None and settings.test_command is None and settings.allowed_commands == ()
    assert settings.base_url == "http://host.docker.internal:1234/v1"
    assert settings.allow_net is False and settings.approval == "ask"
    assert str(settings.tools_dir) == "/tools"
