"""The audit trail: one JSON line per tool call, decision and command, with secrets redacted before writing."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

MASK = "***"
MIN_SECRET_CHARS = 4  # shorter "secrets" (placeholder keys like "x") would mask ordinary text everywhere

_SECRET_FIELD = re.compile(r"(?:.*_(?:key|token|secret|password)|authorization|api_?key|token|secret|password)\Z",
                           re.IGNORECASE)
_BEARER = re.compile(r"\b([Bb]earer)\s+[A-Za-z0-9\-._~+/]{8,}=*")
_ENV_ASSIGNMENT = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*_(?:KEY|TOKEN|SECRET|PASSWORD))=(\"[^\"]*\"|'[^']*'|[^\s;&|]+)",
                             re.IGNORECASE)


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def audit_path(state_dir: Path, day: dt.date) -> Path:
    return state_dir / "audit" / f"{day.isoformat()}.jsonl"


class AuditLog:
    """Append-only, thread-safe; an I/O failure is remembered in ``last_error`` instead of raised."""

    def __init__(self, state_dir: Path, *, secrets: Sequence[str] = (),
                 clock: Callable[[], dt.datetime] = _utc_now) -> None:
        self.state_dir = Path(state_dir)
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = sorted({s for s in secrets if s and len(s) >= MIN_SECRET_CHARS}, key=len, reverse=True)
        self._clock = clock
        self._lock = threading.Lock()
        self.last_error: str | None = None

    def redact(self, value: Any) -> Any:
        """A JSON-ready copy of ``value`` with every secret masked, through nested dicts and lists."""
        if isinstance(value, Mapping):
            return {self._redact_text(str(k)): MASK if _SECRET_FIELD.match(str(k).replace("-", "_"))
                    else self.redact(v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self.redact(v) for v in value]
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        return self._redact_text(str(value))

    def _redact_text(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        text = _BEARER.sub(rf"\1 {MASK}", text)
        return _ENV_ASSIGNMENT.sub(rf"\1={MASK}", text)

    def record(self, kind: str, **fields: Any) -> None:
        """Append one redacted line ``{"ts", "kind", **fields}``; ``ts`` is always the log's own clock."""
        now = self._clock()
        entry = {"ts": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"), "kind": kind}
        entry.update((k, v) for k, v in self.redact(fields).items() if k not in entry)
        line = (json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        path = audit_path(self.state_dir, now.date())
        with self._lock:
            try:
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, line)  # one write per line: O_APPEND keeps concurrent writers' lines whole
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                self.last_error = f"audit log not written to {path}: {exc.strerror or exc}"


def read_audit(state_dir: Path, date: dt.date | str | None = None) -> list[dict[str, Any]]:
    """The entries of one UTC day (today by default); a torn or corrupt line is skipped."""
    day = dt.date.fromisoformat(date) if isinstance(date, str) else date or _utc_now().date()
    try:
        text = audit_path(Path(state_dir), day).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    entries = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries
