"""Local tracing: SDK spans go to `traces/<date>.jsonl` in the state dir and are never uploaded."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from agents import TracingProcessor, set_trace_processors
from agents.tracing import set_trace_provider, setup
from agents.tracing.provider import DefaultTraceProvider

_installed: Path | None = None


class JsonlTraceProcessor(TracingProcessor):
    """Replaces the SDK's OpenAI uploader: one JSON object per finished span or trace."""

    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self._lock = threading.Lock()

    def _write(self, obj: dict[str, Any] | None) -> None:
        if obj is None:
            return
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
            path = self._dir / f"{time.strftime('%Y-%m-%d', time.gmtime())}.jsonl"
            with self._lock, open(path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(obj, default=str) + "\n")
        except OSError:
            pass  # tracing is diagnostics only: a full or read-only disk must not stop a run

    def on_trace_start(self, trace: Any) -> None:
        return None

    def on_trace_end(self, trace: Any) -> None:
        self._write(trace.export())

    def on_span_start(self, span: Any) -> None:
        return None

    def on_span_end(self, span: Any) -> None:
        self._write(span.export())

    def shutdown(self) -> None:
        return None

    def force_flush(self) -> None:
        return None


def install_local_tracing(state_dir: Path) -> None:
    """Install once per process; our processor replaces the default exporter (no upload)."""
    global _installed
    target = state_dir / "traces"
    if _installed == target:
        return
    processor = JsonlTraceProcessor(target)
    if setup.GLOBAL_TRACE_PROVIDER is None:
        # The SDK's first provider comes with its uploader, an HTTPS client (CA bundle loaded, ~0.8 MB) that
        # set_trace_processors would drop from the provider but the SDK would keep: install a provider without it.
        provider = DefaultTraceProvider()
        provider.set_processors([processor])
        set_trace_provider(provider)
    else:
        set_trace_processors([processor])
    _installed = target
