"""The approval modal: shows a guarded call (diff, command or tool arguments) and returns the operator's answer."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.highlight import highlight
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from core.events import ApprovalRequested
from tui.widgets.diff_render import render_diff

REASON_PLACEHOLDER = "reason sent to the model (enter sends, may be empty)"


@dataclass(frozen=True)
class ApprovalAnswer:
    """The operator's answer to one approval request."""

    decision: Literal["approve", "always", "reject"]
    reason: str = ""


def _arguments(request: ApprovalRequested) -> dict[str, Any] | None:
    try:
        value = json.loads(request.arguments) if request.arguments else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def write_path(request: ApprovalRequested) -> str:
    """The file a write request targets: its `path` argument, else the diff's `+++` header, else the summary."""
    arguments = _arguments(request) or {}
    path = arguments.get("path")
    if isinstance(path, str) and path:
        return path
    for line in (request.diff or "").splitlines():
        if line.startswith("+++ ") and not line.startswith("+++ /dev/null"):
            name = line[4:].split("\t", 1)[0].strip()
            return name[2:] if name.startswith("b/") else name
    return request.summary or request.tool


def command_text(request: ApprovalRequested) -> str:
    """The command as the model wrote it: its `command` argument, else the summary, else the joined argv."""
    arguments = _arguments(request) or {}
    command = arguments.get("command")
    if isinstance(command, str) and command:
        return command
    if request.summary:
        return request.summary
    return " ; ".join(shlex.join(argv) for argv in request.argv or [])


def title_for(request: ApprovalRequested) -> str:
    if request.kind == "write":
        return f"Approve write to {write_path(request)}?"
    if request.kind == "command":
        return "Approve command?"
    if request.kind == "mcp":
        return "Approve MCP tool call?"
    return "Approve tool call?"


def queued_text(queued: int) -> str:
    return f"{queued} more approval{'s' if queued != 1 else ''} queued"


class ApprovalScreen(ModalScreen[ApprovalAnswer]):
    """Ask the operator about one guarded call; dismisses with an :class:`ApprovalAnswer`."""

    CSS_PATH = "approval_screen.tcss"
    AUTO_FOCUS = "#approval-body"
    ESCAPE_TO_MINIMIZE = False

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "approve", "approve once"),
        Binding("a", "always", "always allow"),
        Binding("n", "ask_reason", "reject with reason"),
        Binding("escape", "reject", "reject"),
        Binding("f", "toggle_full_screen", "full screen"),
    ]

    def __init__(self, request: ApprovalRequested, *, queued: int = 0, rule_text: str | None = None) -> None:
        super().__init__()
        self.request = request
        self.queued = queued
        self.rule_text = rule_text
        self._reason_open = False

    def compose(self) -> ComposeResult:
        request = self.request
        with Vertical(id="approval-dialog", classes="-fill" if request.kind == "write" and request.diff else ""):
            yield Static(Content(title_for(request)), id="approval-title")
            if request.reason:
                yield Static(Content.assemble(("why: ", "bold"), request.reason), id="approval-reason")
            queued_line = Static(Content(queued_text(self.queued)), id="approval-queued")
            queued_line.display = self.queued > 0
            yield queued_line
            with VerticalScroll(id="approval-body", can_maximize=True):
                yield from self._compose_body()
            yield Input(placeholder=REASON_PLACEHOLDER, id="approval-reason-input")
            yield Static(self._hints(), id="approval-keys")

    def set_queued(self, queued: int) -> None:
        """Show how many more approvals wait behind this one (0 hides the line)."""
        self.queued = queued
        queued_line = self.query_one("#approval-queued", Static)
        queued_line.update(Content(queued_text(queued)))
        queued_line.display = queued > 0

    def _compose_body(self) -> ComposeResult:
        request = self.request
        if request.kind == "write" and request.diff:
            yield Static(render_diff(request.diff), id="approval-diff")
        elif request.kind == "command":
            yield Static(Content.assemble(("$ ", "bold"), command_text(request)), id="approval-command")
            argv = request.argv or []
            if argv:
                parts = [Content.styled("parts:", "bold")]
                parts.extend(Content(f"  {number}. {shlex.join(part)}") for number, part in enumerate(argv, 1))
                yield Static(Content("\n").join(parts), id="approval-parts")
            if request.cwd:
                yield Static(Content.assemble(("in ", "bold"), request.cwd), id="approval-cwd")
        else:
            yield Static(Content.assemble(("tool: ", "bold"), request.tool), id="approval-tool")
            yield Static(self._arguments_view(), id="approval-arguments")

    def _arguments_view(self) -> Content:
        try:
            parsed = json.loads(self.request.arguments) if self.request.arguments else {}
        except ValueError:
            return Content(self.request.arguments)
        return highlight(json.dumps(parsed, indent=2, ensure_ascii=False), language="json")

    def _hints(self) -> Content:
        if self._reason_open:
            return Content.from_markup(
                "\\[enter] send reason   [@click=screen.reject]\\[esc] reject without a reason[/]"
            )
        hints = [
            "[@click=screen.approve]\\[y] approve once[/]",
            "[@click=screen.ask_reason]\\[n] reject with reason[/]",
            "[@click=screen.reject]\\[esc] reject[/]",
            "[@click=screen.toggle_full_screen]\\[f] full screen[/]",
        ]
        line = Content.from_markup("   ".join(hints))
        if self.rule_text is None:
            return line
        always = Content.from_markup("[@click=screen.always]\\[a] always allow: $rule[/]", rule=self.rule_text)
        return Content("\n").join([line, always])

    @property
    def _typing_reason(self) -> bool:
        return isinstance(self.focused, Input)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("approve", "always", "ask_reason", "toggle_full_screen") and self._typing_reason:
            return False
        return not (action == "always" and self.rule_text is None)

    def action_approve(self) -> None:
        self.dismiss(ApprovalAnswer("approve"))

    def action_always(self) -> None:
        self.dismiss(ApprovalAnswer("always"))

    def action_reject(self) -> None:
        self.dismiss(ApprovalAnswer("reject", ""))

    def action_ask_reason(self) -> None:
        self.minimize()
        reason_input = self.query_one("#approval-reason-input", Input)
        self._reason_open = True
        reason_input.add_class("-open")
        reason_input.focus()
        self.query_one("#approval-keys", Static).update(self._hints())
        self.refresh_bindings()

    def action_toggle_full_screen(self) -> None:
        if self.maximized is None:
            self.maximize(self.query_one("#approval-body"), container=False)
        else:
            self.minimize()

    @on(Input.Submitted, "#approval-reason-input")
    def _send_reason(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(ApprovalAnswer("reject", event.value.strip()))
