"""The hostile-input corpora: a workspace laid out with traps, and the check each path or command case must pass."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.approvals import decide
from core.config import shipped_policy_dir
from core.errors import WorkspaceError
from core.policy import load_policies
from core.policy_types import PolicySet
from tools import files
from tools.workspace import Workspace

CORPORA = Path(__file__).resolve().parent / "corpora"
SECRET = "TOPSECRET"
MODES = ("ask", "auto-edit", "full-auto")


def load(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (CORPORA / name).read_text().splitlines() if line.strip()]


@dataclass
class Layout:
    """base/ws is the workspace; base/outside and base/wsevil (a sibling sharing its prefix) are never reached."""

    base: Path
    root: Path
    outside: Path

    def expand(self, text: str) -> str:
        return (text.replace("{root}", str(self.root)).replace("{outside}", str(self.outside))
                .replace("{base}", str(self.base)))

    def guarded_digest(self) -> str:
        """A digest of everything that must not change: the trees outside the root and the protected files inside."""
        digest = hashlib.sha256()
        trees = [self.outside, self.base / "wsevil"]
        protected = [self.root / p for p in (".env", "keys/server.pem", ".ssh/id_rsa", ".git/config")]
        for path in sorted(p for tree in trees for p in tree.rglob("*")) + protected:
            digest.update(str(path).encode())
            if path.is_file() and not path.is_symlink():
                digest.update(path.read_bytes())
        return digest.hexdigest()


LINKS = {
    "link_in": "a", "link_in_abs": "{root}/a", "link_out": "../outside", "link_out_abs": "{outside}",
    "link_root": "/", "link_up": "..", "a/link_up2": "../..", "chain1": "chain2", "chain2": "link_out",
    "chain_abs": "{root}/link_out_abs", "loop": "loop", "loop2": "loop3", "loop3": "loop2",
    "dangling_out": "../outside/nonexistent_dir", "link_etc_passwd": "/etc/passwd",
    "link_file_out": "../outside/secret.txt", "a/deep/link_deep_out": "../../../outside", "link_self": ".",
    "link_dotdot_chain": "a/link_up2/outside", "link_tmp": "/tmp", "link_home": "/root",
    "link_slash_dotdot": "/../../", "link_proc": "/proc/self/root", "link_cwd": "/proc/self/cwd",
    "link_fd": "/dev/fd", "link_dev": "/dev", "a/link_proc_rel": "../../../../../../../../../../proc/self/root",
    "link_env": ".env", "link_env_abs": "{root}/.env", "link_keys": "keys", "link_pem": "keys/server.pem",
    "link_ssh": ".ssh", "link_git": ".git", "link_git_config": ".git/config", "link_a_env": "a/../.env",
    "link_chain_env": "link_env",
}


def build_layout(base: Path) -> Layout:
    base = base.resolve()
    layout = Layout(base, base / "ws", base / "outside")
    root = layout.root
    for d in ("a/deep", "keys", ".ssh", ".git", "sub"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "a" / "f.txt").write_text("inside\n")
    for rel in (".env", "keys/server.pem", ".ssh/id_rsa", "sub/.env"):
        (root / rel).write_text(f"{SECRET} {rel}\n")
    (root / ".git" / "config").write_text("[core]\n")
    (layout.outside / "sub").mkdir(parents=True)
    (layout.outside / "secret.txt").write_text(f"{SECRET} outside\n")
    (layout.outside / "sub" / "inner.txt").write_text(f"{SECRET} inner\n")
    (base / "wsevil").mkdir()
    (base / "wsevil" / "secret.txt").write_text(f"{SECRET} sibling\n")
    for name, target in LINKS.items():
        os.symlink(layout.expand(target), root / name)
    return layout


def policy() -> PolicySet:
    return load_policies(shipped_policy_dir(), allow_net=False)


def check_path(ws: Workspace, layout: Layout, case: dict[str, Any]) -> list[str]:
    """Resolve for reading and writing, then read: each refused (WorkspaceError) or confined and never a secret."""
    path = layout.expand(case["path"])
    problems: list[str] = []
    must_refuse_read = bool(case.get("secret"))
    must_refuse_write = must_refuse_read or bool(case.get("read_only"))
    for write, must_refuse in ((False, must_refuse_read), (True, must_refuse_write)):
        verb = "write" if write else "read"
        try:
            real = ws.resolve(path, write=write)
        except WorkspaceError:
            continue
        except Exception as exc:  # anything but a refusal the model can read is a crash of the tool
            problems.append(f"{verb}: {type(exc).__name__}: {exc}"[:200])
            continue
        inside = os.path.commonpath([str(ws.root), str(real)]) == str(ws.root)
        if not inside:
            problems.append(f"{verb}: resolved outside the workspace to {real}")
        elif must_refuse:
            problems.append(f"{verb}: a protected path resolved to {real} instead of being refused")
        elif ws.rules.is_hidden(ws.relative(real)):
            problems.append(f"{verb}: resolved to the hidden {ws.relative(real)}")
    try:
        text = files.read_file(ws, path)
        if SECRET in text:
            problems.append(f"read_file returned a secret: {text[:80]!r}")
    except WorkspaceError:
        pass
    except Exception as exc:
        problems.append(f"read_file: {type(exc).__name__}: {exc}"[:200])
    return problems


def check_write(ws: Workspace, layout: Layout, case: dict[str, Any]) -> list[str]:
    """Plan and apply a write: refused, or written inside. The caller compares the guarded digest."""
    path = layout.expand(case["path"])
    try:
        real = ws.resolve(path, write=True)
    except Exception:
        return []  # refused before any file is touched (resolve is what the write path calls first)
    if os.path.commonpath([str(ws.root), str(real)]) != str(ws.root):
        return [f"write skipped: it would go outside to {real}"]
    try:
        files.apply_change(ws, files.plan_write(ws, path, "overwritten by the corpus\n"))
    except WorkspaceError:
        return []
    except Exception as exc:
        return [f"write: {type(exc).__name__}: {exc}"[:200]]
    return []


def check_command(pol: PolicySet, layout: Layout, case: dict[str, Any]) -> list[str]:
    """A denied, asked or network command, however hidden, is never `allow` in any approval mode."""
    command = layout.expand(case["command"])
    problems = []
    for mode in MODES:
        decision = decide("run_command", {"command": command}, pol, mode, (), workspace_root=layout.root)
        if decision.verdict == "allow":
            problems.append(f"{mode}: allowed ({decision.reason[:160]})")
    return problems
