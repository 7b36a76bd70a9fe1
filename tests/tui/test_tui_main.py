"""`agent-tui` entry point: TTY check, colour fallback over docker exec, settings errors and argument parsing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from textual.app import App

from core.errors import ConfigError
from tui.__main__ import NO_TTY_MESSAGE, RESUME_PICKER, _color_environment, build_parser, first_frame_labels, main
from tui.app import DevAgentApp


def test_without_a_tty_it_explains_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fix the tests"]) == 2
    assert capsys.readouterr().err.strip() == NO_TTY_MESSAGE


def test_a_bad_setting_prints_the_message_and_exits_2(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    # The settings are read after the first frame: let the app paint it headless.
    monkeypatch.setattr(DevAgentApp, "run", lambda self: App.run(self, headless=True))
    monkeypatch.setenv("AGENT_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("OPENAI_BASE_URL", "localhost:1234")
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "OPENAI_BASE_URL" in err and "Traceback" not in err


def test_a_config_error_while_the_engine_starts_ends_the_app_with_code_2() -> None:
    error = ConfigError("mcp_servers[0]: expected a mapping with name and transport", hint="write one per server")

    async def engine_factory():
        raise error

    app = DevAgentApp(engine_factory=engine_factory)
    app.run(headless=True)
    assert (app.return_code, app.config_error) == (2, error)


def test_the_first_frame_labels_come_from_flags_then_environment(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    env = {"AGENT_WORKSPACE": "~", "AGENT_MODEL": " qwen ", "AGENT_APPROVAL": "auto-edit"}
    labels = first_frame_labels(build_parser().parse_args([]), env)
    assert labels == {"workspace_label": str(Path.home().resolve()), "model_label": "qwen",
                      "approval_mode": "auto-edit"}
    flags = build_parser().parse_args(["--workspace", ".", "--model", "m", "--approval", "full-auto"])
    assert first_frame_labels(flags, env) == {"workspace_label": str(tmp_path.resolve()), "model_label": "m",
                                              "approval_mode": "full-auto"}
    assert first_frame_labels(build_parser().parse_args([]), {}) == {
        "workspace_label": str(tmp_path.resolve()), "model_label": "", "approval_mode": "ask"}


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


def test_the_history_provider_reads_the_resumed_session_without_locking_it(tmp_path: Path) -> None:
    from core.config import load_settings
    from core.events import UserMessage
    from core.session_log import SessionStore
    from tui.__main__ import _history_provider

    workspace = tmp_path / "ws"
    workspace.mkdir()
    settings = load_settings({"HOME": str(tmp_path), "AGENT_STATE_DIR": str(tmp_path / "state"),
                              "AGENT_WORKSPACE": str(workspace)})
    store = SessionStore(settings.state_dir)
    session = store.create(workspace=workspace, model=None)
    session.acquire()  # held by a live engine: reading must not need the lock
    session.append(UserMessage(text="hello"))

    by_prefix = _history_provider(lambda: settings, session_id=session.id[:12])()
    latest = _history_provider(lambda: settings, session_id=None, latest=True)()
    nothing = _history_provider(lambda: settings, session_id=None)()
    assert [e.text for e in by_prefix if e.type == "user_message"] == ["hello"]
    assert [e.seq for e in latest] == [e.seq for e in by_prefix]
    assert nothing == []
    session.close()
