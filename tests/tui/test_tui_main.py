"""`agent-tui` entry point: TTY check, colour fallback over docker exec, settings errors and argument parsing."""

from __future__ import annotations

import sys

import pytest

from tui.__main__ import NO_TTY_MESSAGE, RESUME_PICKER, _color_environment, build_parser, main


def test_without_a_tty_it_explains_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fix the tests"]) == 2
    assert capsys.readouterr().err.strip() == NO_TTY_MESSAGE


def test_a_bad_setting_prints_the_message_and_exits_2(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setenv("AGENT_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("OPENAI_BASE_URL", "localhost:1234")
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "OPENAI_BASE_URL" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"TERM": "xterm"}, "256"),
        ({}, "256"),
        ({"TERM": "xterm", "COLORTERM": "truecolor"}, None),
        ({"TERM": "xterm", "TEXTUAL_COLOR_SYSTEM": "truecolor"}, "truecolor"),
        ({"TERM": "xterm-256color"}, None),
    ],
)
def test_docker_exec_terminal_gets_256_colours(env: dict[str, str], expected: str | None) -> None:
    _color_environment(env)
    assert env.get("TEXTUAL_COLOR_SYSTEM") == expected


def test_arguments_follow_the_spec() -> None:
    parser = build_parser()
    args = parser.parse_args(["add a README", "--workspace", "/w", "--state-dir", "/s", "--model", "m",
                              "--base-url", "http://x:1/v1", "--approval", "auto-edit"])
    assert (args.goal, args.workspace, args.state_dir, args.model, args.base_url, args.approval) == (
        "add a README", "/w", "/s", "m", "http://x:1/v1", "auto-edit")
    assert parser.parse_args(["--resume"]).resume == RESUME_PICKER
    assert parser.parse_args(["--resume", "abc"]).resume == "abc"
    assert parser.parse_args(["--continue"]).continue_
    with pytest.raises(SystemExit):
        parser.parse_args(["--approval", "sometimes"])
