"""Pilot tests for the approval modal: every key, the reason input, the queued count and the diff renderer."""

from __future__ import annotations

from textual.app import App
from textual.widgets import Input, Static

from core.events import ApprovalRequested
from tui.screens.approval_screen import ApprovalAnswer, ApprovalScreen
from tui.widgets.diff_render import render_diff

SIZE = (120, 40)

WRITE_DIFF = "\n".join(
    [
        "diff --git a/src/app.py b/src/app.py",
        "--- a/src/app.py",
        "+++ b/src/app.py",
        "@@ -1,6 +1,7 @@",
        " import sys",
        "-",
        "-def main():",
        "-    return 1",
        "+",
        "+def main() -> int:",
        "+    -- a removed-looking line that is really an addition",
        "+    return 0",
        " ",
        ' if __name__ == "__main__":',
        "",
    ]
)


def write_request(diff: str = WRITE_DIFF) -> ApprovalRequested:
    return ApprovalRequested(
        call_id="call-1",
        tool="edit_file",
        arguments='{"path": "src/app.py", "old_text": "return 1", "new_text": "return 0"}',
        kind="write",
        summary="edit src/app.py",
        diff=diff,
        reason="writes need approval in ask mode",
        suggested_rule="src/**",
    )


def command_request() -> ApprovalRequested:
    return ApprovalRequested(
        call_id="call-2",
        tool="run_command",
        arguments='{"command": "npm test -- --watch=false && rm -rf build"}',
        kind="command",
        argv=[["npm", "test", "--", "--watch=false"], ["rm", "-rf", "build"]],
        cwd="/work/ws/web",
        reason="'rm' is not in the allowed commands",
        suggested_rule="npm test",
    )


def mcp_request() -> ApprovalRequested:
    return ApprovalRequested(
        call_id="call-3",
        tool="github.create_issue",
        arguments='{"title": "Crash on [start]", "labels": ["bug", "p1"]}',
        kind="mcp",
        reason="MCP tools always ask",
    )


class ApprovalHost(App[None]):
    """Pushes one approval screen on mount and collects what it dismisses with."""

    def __init__(self, screen: ApprovalScreen) -> None:
        super().__init__()
        self.approval = screen
        self.answers: list[ApprovalAnswer] = []

    def on_mount(self) -> None:
        self.push_screen(self.approval, self.answers.append)


def shown_text(screen: ApprovalScreen) -> str:
    return "\n".join(str(static.visual.plain) for static in screen.query(Static) if static.display and static.visual)


async def answers_after(screen: ApprovalScreen, *keys: str) -> list[ApprovalAnswer]:
    app = ApprovalHost(screen)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press(*keys)
        await pilot.pause()
    return app.answers


async def test_y_approves_once() -> None:
    assert await answers_after(ApprovalScreen(write_request()), "y") == [ApprovalAnswer("approve")]


async def test_a_always_allows_when_a_rule_is_offered() -> None:
    screen = ApprovalScreen(command_request(), rule_text="commands starting with 'npm test'")
    assert await answers_after(screen, "a") == [ApprovalAnswer("always")]


async def test_a_does_nothing_without_a_rule() -> None:
    app = ApprovalHost(ApprovalScreen(command_request()))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("a")
        await pilot.pause()
        assert app.answers == []
        assert app.screen is app.approval
        assert "always allow" not in shown_text(app.approval)
        await pilot.press("y")
        await pilot.pause()
    assert app.answers == [ApprovalAnswer("approve")]


async def test_n_then_reason_then_enter_rejects_with_the_reason() -> None:
    app = ApprovalHost(ApprovalScreen(write_request(), rule_text="writes to src/**"))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        reason_input = app.approval.query_one("#approval-reason-input", Input)
        assert not reason_input.display
        await pilot.press("n")
        await pilot.pause()
        assert reason_input.display
        assert app.approval.focused is reason_input
        assert reason_input.placeholder == "reason sent to the model (enter sends, may be empty)"
        await pilot.press(*"use pathlib", "enter")
        await pilot.pause()
    assert app.answers == [ApprovalAnswer("reject", "use pathlib")]


async def test_letters_go_into_the_reason_not_to_the_actions() -> None:
    screen = ApprovalScreen(write_request(), rule_text="writes to src/**")
    answers = await answers_after(screen, "n", "y", "a", "n", "f", "enter")
    assert answers == [ApprovalAnswer("reject", "yanf")]


async def test_n_then_enter_rejects_with_an_empty_reason() -> None:
    assert await answers_after(ApprovalScreen(write_request()), "n", "enter") == [ApprovalAnswer("reject", "")]


async def test_escape_in_the_reason_input_rejects_without_a_reason() -> None:
    answers = await answers_after(ApprovalScreen(write_request()), "n", "n", "o", "escape")
    assert answers == [ApprovalAnswer("reject", "")]


async def test_escape_rejects_without_a_reason() -> None:
    assert await answers_after(ApprovalScreen(command_request()), "escape") == [ApprovalAnswer("reject", "")]


async def test_queued_count_is_shown() -> None:
    app = ApprovalHost(ApprovalScreen(write_request(), queued=3))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert "3 more approvals queued" in shown_text(app.approval)


async def test_queued_count_can_change_while_open() -> None:
    app = ApprovalHost(ApprovalScreen(write_request()))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert "queued" not in shown_text(app.approval)
        app.approval.set_queued(1)
        await pilot.pause()
        assert "1 more approval queued" in shown_text(app.approval)
        app.approval.set_queued(0)
        await pilot.pause()
        assert "queued" not in shown_text(app.approval)


async def test_escape_in_full_screen_still_rejects() -> None:
    assert await answers_after(ApprovalScreen(write_request()), "f", "escape") == [ApprovalAnswer("reject", "")]


async def test_write_shows_title_reason_diff_and_hints() -> None:
    app = ApprovalHost(ApprovalScreen(write_request(), rule_text="writes to src/**"))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        text = shown_text(app.approval)
    assert "Approve write to src/app.py?" in text
    assert "why: writes need approval in ask mode" in text
    assert "+ def main() -> int:" in text
    assert "[y] approve once" in text
    assert "[a] always allow: writes to src/**" in text
    assert "[n] reject with reason" in text
    assert "[esc] reject" in text


async def test_command_shows_the_command_its_parts_and_the_directory() -> None:
    app = ApprovalHost(ApprovalScreen(command_request(), rule_text="commands starting with 'npm test'"))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        text = shown_text(app.approval)
    assert "Approve command?" in text
    assert "$ npm test -- --watch=false && rm -rf build" in text
    assert "1. npm test -- --watch=false" in text
    assert "2. rm -rf build" in text
    assert "in /work/ws/web" in text
    assert "[a] always allow: commands starting with 'npm test'" in text


async def test_mcp_shows_the_tool_and_pretty_arguments() -> None:
    app = ApprovalHost(ApprovalScreen(mcp_request()))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        text = shown_text(app.approval)
    assert "Approve MCP tool call?" in text
    assert "tool: github.create_issue" in text
    assert '  "title": "Crash on [start]",' in text


async def test_a_write_without_a_diff_shows_its_arguments() -> None:
    request = write_request().model_copy(update={"diff": None, "arguments": '{"path": "notes.md", "content": "hi"}'})
    app = ApprovalHost(ApprovalScreen(request))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        text = shown_text(app.approval)
    assert "Approve write to notes.md?" in text
    assert '"content": "hi"' in text


async def test_other_tools_get_a_generic_title() -> None:
    request = mcp_request().model_copy(update={"kind": "other", "tool": "fetch_url"})
    app = ApprovalHost(ApprovalScreen(request))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        text = shown_text(app.approval)
    assert "Approve tool call?" in text
    assert "tool: fetch_url" in text


async def test_f_toggles_full_screen_and_arrows_scroll_the_diff() -> None:
    long_diff = "--- a/big.py\n+++ b/big.py\n@@ -0,0 +1,200 @@\n" + "".join(f"+line_{n} = {n}\n" for n in range(200))
    app = ApprovalHost(ApprovalScreen(write_request(long_diff)))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        body = app.approval.query_one("#approval-body")
        keys = app.approval.query_one("#approval-keys")
        assert keys.region.bottom <= 24
        assert body.max_scroll_y > 0
        await pilot.press("down", "down", "pagedown")
        await pilot.pause()
        assert body.scroll_y > 2
        await pilot.press("f")
        await pilot.pause()
        assert app.approval.maximized is body
        await pilot.press("f")
        await pilot.pause()
        assert app.approval.maximized is None
        assert app.answers == []


def test_render_diff_numbers_old_and_new_lines() -> None:
    lines = render_diff(WRITE_DIFF).plain.splitlines()
    assert lines[3] == "@@ -1,6 +1,7 @@"
    assert lines[4] == "1 1   import sys"
    assert lines[5] == "2   - "
    assert lines[6] == "3   - def main():"
    assert lines[8] == "  2 + "
    assert lines[10] == "  4 +     -- a removed-looking line that is really an addition"
    assert lines[12] == "5 6   "
    assert lines[13] == '6 7   if __name__ == "__main__":'


def test_render_diff_keeps_numbers_aligned_across_form_feeds() -> None:
    diff = "--- a/m.py\n+++ b/m.py\n@@ -1,3 +1,3 @@\n a = 1\n-\x0cb = 2\n+b = 3\n c = 4\n"
    assert render_diff(diff).plain.split("\n")[3:] == ["1 1   a = 1", "2   - b = 2", "  2 + b = 3", "3 3   c = 4"]


def test_render_diff_highlights_with_theme_variables() -> None:
    content = render_diff(WRITE_DIFF)
    styles = {str(span.style) for span in content.spans}
    assert "on $success-muted" in styles
    assert "on $error-muted" in styles
    assert any("$text-accent" in style for style in styles)
