"""Just enough of a Dockerfile parser for the container tests: stages, and the instructions of each.

Handles what our Dockerfile uses: line continuations, comments (including parser directives and
`# hadolint ignore=` lines), `ARG` before the first `FROM`, `ENV k=v ...` with shell quoting, and the JSON
(exec) form of ENTRYPOINT, CMD and HEALTHCHECK CMD. Anything else in those forms is a test failure on purpose:
the tests run these commands, so they must be unambiguous.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"

# What the daemon puts in a container's environment before the image's ENV (moby CreateDaemonEnvironment).
DOCKER_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert found, f"stage {self.name or self.base} has no {keyword}"
        return found[-1]


@dataclass
class Dockerfile:
    global_args: list[Instruction]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)


def logical_lines(text: str) -> list[tuple[int, str]]:
    """Join backslash continuations; drop comments and blank lines (comments inside a continuation too)."""
    out: list[tuple[int, str]] = []
    buf: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not buf):
            continue
        if not buf:
            start = number
        if stripped.endswith("\\"):
            buf.append(stripped[:-1].strip())
            continue
        buf.append(stripped)
        out.append((start, " ".join(p for p in buf if p)))
        buf = []
    if buf:
        out.append((start, " ".join(buf)))
    return out


def parse(text: str) -> Dockerfile:
    global_args: list[Instruction] = []
    stages: list[Stage] = []
    for number, line in logical_lines(text):
        keyword, _, args = line.partition(" ")
        ins = Instruction(keyword.upper(), args.strip(), number)
        if ins.keyword == "FROM":
            match = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", ins.args, re.IGNORECASE)
            assert match, f"line {number}: cannot read FROM {ins.args!r}"
            stages.append(Stage(base=match.group(1), name=match.group(2)))
        elif stages:
            stages[-1].instructions.append(ins)
        else:
            assert ins.keyword == "ARG", f"line {number}: only ARG may come before FROM"
            global_args.append(ins)
    return Dockerfile(global_args, stages)


def load() -> Dockerfile:
    return parse(DOCKERFILE.read_text(encoding="utf-8"))


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), f"not an exec form: {args}"
    return value


def env_pairs(args: str) -> list[tuple[str, str]]:
    """`ENV a=1 b="two words"` -> [("a", "1"), ("b", "two words")]; values keep `$VAR` for expand()."""
    pairs = []
    for token in shlex.split(args, posix=True):
        key, sep, value = token.partition("=")
        assert sep, f"ENV must use the key=value form, got {token!r}"
        pairs.append((key, value))
    return pairs


def expand(value: str, env: dict[str, str]) -> str:
    """Dockerfile variable substitution: $VAR and ${VAR} (the only forms our ENV lines may use)."""
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m.group(1) or m.group(2), ""), value)


def image_env(stage: Stage) -> dict[str, str]:
    """The environment the final image declares, in order, starting from the daemon's default PATH."""
    env = {"PATH": DOCKER_DEFAULT_PATH}
    for ins in stage.all("ENV"):
        for key, value in env_pairs(ins.args):
            env[key] = expand(value, env)
    return env


def healthcheck(stage: Stage) -> tuple[dict[str, str], list[str]]:
    """(options, command) of the stage's HEALTHCHECK, which must use `CMD [...]`."""
    match = re.fullmatch(r"((?:--[\w-]+=\S+\s+)*)CMD\s+(\[.*\])", stage.last("HEALTHCHECK").args)
    assert match, "HEALTHCHECK must be `[--opt=value ...] CMD [exec form]`"
    options = dict(opt.removeprefix("--").split("=", 1) for opt in match.group(1).split())
    return options, exec_form(match.group(2))
