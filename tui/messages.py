"""Messages that carry the core's events into the Textual app."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from core.events import Event


@dataclass
class EngineEvent(Message):
    """A core event from the engine subscription; posted so that widgets are only touched by the app's handler."""

    event: Event
