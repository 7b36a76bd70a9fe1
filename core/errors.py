"""One exception family per boundary, each carrying a message an operator or a model can act on."""

from __future__ import annotations

STATE_DIR_HINT = "free disk space for the state directory, or point AGENT_STATE_DIR at a writable directory"


class AgentError(Exception):
    """Base of every error dev-agent raises on purpose.

    ``hint`` is the concrete next step for the operator; ``str(err)`` is the problem itself.
    """

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  fix: {self.hint}" if self.hint else self.message


class ConfigError(AgentError):
    """A setting (environment variable, settings.yaml, command-line flag) is wrong."""


class PolicyError(AgentError):
    """A policy file is invalid; the message names file, line and problem."""


class WorkspaceError(AgentError):
    """A model-supplied path or command was refused, or a workspace operation failed.

    The message is sent back to the model verbatim, so it says what to do instead.
    """


class EndpointError(AgentError):
    """The model endpoint failed; ``kind`` classifies it (unreachable, auth, model_not_loaded, context_overflow...)."""

    def __init__(self, message: str, *, kind: str, hint: str = "", status: int | None = None) -> None:
        super().__init__(message, hint=hint)
        self.kind = kind
        self.status = status


class SessionError(AgentError):
    """A session could not be found, read or written."""
