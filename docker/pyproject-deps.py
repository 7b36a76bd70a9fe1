"""Print the requirements of a pyproject.toml, one per line, for `pip install -r`.

The image installs the dependencies in a layer keyed only on pyproject.toml (and this script), so a
source change does not reinstall them. `--build-system` prints the build backend's requirements instead.
"""

from __future__ import annotations

import sys
import tomllib


def requirements(pyproject: dict, *, build_system: bool = False) -> list[str]:
    if build_system:
        return list(pyproject.get("build-system", {}).get("requires", []))
    return list(pyproject.get("project", {}).get("dependencies", []))


def main(argv: list[str]) -> int:
    build_system = "--build-system" in argv
    paths = [a for a in argv if a != "--build-system"]
    if len(paths) != 1:
        print("usage: pyproject-deps.py [--build-system] PYPROJECT_TOML", file=sys.stderr)
        return 2
    with open(paths[0], "rb") as fh:
        data = tomllib.load(fh)
    for line in requirements(data, build_system=build_system):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
