"""run_process against real processes: process groups, rlimits, output capping, environment, cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import signal
import sys
from pathlib import Path

import pytest

from core.errors import WorkspaceError
from core.policy_types import CommandLimits
from tools import shell
from tools.shell import CommandResult, clip_middle, format_command_result, run_process

LIMITS = CommandLimits(default_timeout_s=30, max_timeout_s=60, memory_mb=1024, cpu_s=60, output_chars=20_000)


def _gone(pid: int) -> bool:
    """Dead, or a zombie nobody has reaped yet (it no longer runs either way)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


async def _eventually_gone(pid: int) -> bool:
    # SIGKILL is delivered asynchronously; give the kernel a moment before calling it alive.
    for _ in range(100):
        if _gone(pid):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_exit_code_and_merged_stderr(workspace: Path) -> None:
    result = await run_process(["sh", "-c", "echo out; echo err >&2; exit 3"], cwd=workspace, limits=LIMITS)
    assert result.exit_code == 3 and result.signal is None
    assert result.output == "out\nerr\n"
    assert result.cwd == str(workspace) and result.argv == ["sh", "-c", "echo out; echo err >&2; exit 3"]
    text = format_command_result(result)
    assert text.startswith("exit code 3 in ") and text.endswith("out\nerr")


async def test_runs_in_cwd_without_a_shell(workspace: Path) -> None:
    (workspace / "sub").mkdir()
    result = await run_process(["pwd"], cwd=workspace / "sub", limits=LIMITS)
    assert result.output.strip() == str(workspace / "sub")
    # No shell: metacharacters are plain arguments.
    result = await run_process(["echo", "$HOME", "&&", "ls"], cwd=workspace, limits=LIMITS)
    assert result.output == "$HOME && ls\n"


async def test_stdin_is_not_inherited(workspace: Path) -> None:
    result = await run_process(["cat"], cwd=workspace, limits=LIMITS, timeout_s=20)
    assert not result.timed_out and result.exit_code == 0 and result.output == ""


async def test_timeout_kills_the_whole_process_group(workspace: Path) -> None:
    result = await run_process(["sh", "-c", "sleep 60 & echo $!; wait"], cwd=workspace, limits=LIMITS,
                               timeout_s=1)
    assert result.timed_out
    child = int(result.output.split()[0])
    assert await _eventually_gone(child)
    assert format_command_result(result).startswith("timed out after 1.0 s; the process group was killed")


async def test_timeout_is_capped_and_term_ignoring_group_gets_sigkill(workspace: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shell, "KILL_GRACE_S", 0.3)
    limits = CommandLimits(default_timeout_s=120, max_timeout_s=1)
    result = await run_process(["sh", "-c", 'trap "" TERM; sleep 60 & echo $!; wait'], cwd=workspace,
                               limits=limits, timeout_s=500)
    assert result.timed_out and result.signal == signal.SIGKILL and result.exit_code is None
    assert await _eventually_gone(int(result.output.split()[0]))


async def test_background_children_do_not_outlive_a_normal_exit(workspace: Path) -> None:
    # The sleep keeps the output pipe open: without the group kill this would run into the timeout.
    result = await run_process(["sh", "-c", "sleep 60 & echo $!"], cwd=workspace, limits=LIMITS, timeout_s=30)
    assert not result.timed_out and result.exit_code == 0
    assert await _eventually_gone(int(result.output.split()[0]))


async def test_process_that_leaves_the_group_does_not_block_the_call(workspace: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shell, "DRAIN_S", 0.3)
    # Popen returns only after exec, so the sleep has left the group before the leader exits.
    code = "import subprocess; print(subprocess.Popen(['sleep', '30'], start_new_session=True).pid)"
    result = await run_process([sys.executable, "-c", code], cwd=workspace, limits=LIMITS, timeout_s=30)
    escaped = int(result.output.split()[0])
    try:
        assert not result.timed_out and result.exit_code == 0
        assert "still holds the output open" in result.output
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(escaped, signal.SIGKILL)


async def test_memory_limit(workspace: Path) -> None:
    limits = CommandLimits(memory_mb=200)
    result = await run_process([sys.executable, "-c", "x = bytearray(600 * 1024 * 1024); print('allocated')"],
                               cwd=workspace, limits=limits)
    assert result.exit_code != 0
    assert "MemoryError" in result.output and "allocated" not in result.output


async def test_cpu_limit(workspace: Path) -> None:
    limits = CommandLimits(cpu_s=1, default_timeout_s=60)
    result = await run_process([sys.executable, "-c", "while True: pass"], cwd=workspace, limits=limits)
    assert not result.timed_out
    assert result.signal in (signal.SIGXCPU, signal.SIGKILL)
    if result.signal == signal.SIGXCPU:
        assert "(CPU time limit reached)" in format_command_result(result)


async def test_rlimits_seen_by_the_child(workspace: Path) -> None:
    limits = CommandLimits(memory_mb=512, cpu_s=7, max_processes=64)
    code = ("import json, resource as r; print(json.dumps([r.getrlimit(x) for x in "
            "(r.RLIMIT_AS, r.RLIMIT_CPU, r.RLIMIT_CORE, r.RLIMIT_NPROC)]))")
    result = await run_process([sys.executable, "-c", code], cwd=workspace, limits=limits)
    as_, cpu, core, nproc = json.loads(result.output)
    assert as_ == [512 * 1024 * 1024] * 2
    assert cpu[0] == 7 and cpu[1] > 7
    assert core == [0, 0]
    assert nproc == [64, 64]
    # The parent is untouched.
    assert resource.getrlimit(resource.RLIMIT_CPU) != (7, cpu[1])


async def test_output_cap_keeps_head_and_tail(workspace: Path) -> None:
    limits = CommandLimits(output_chars=2_000)
    result = await run_process([sys.executable, "-c", "for i in range(100000): print('line', i)"],
                               cwd=workspace, limits=limits)
    total = sum(len(f"line {i}\n") for i in range(100_000))
    assert result.exit_code == 0 and result.truncated
    assert result.output_chars == total
    assert result.output.startswith("line 0\nline 1\n")
    assert result.output.endswith("line 99998\nline 99999\n")
    omitted = total - 2_000
    assert f"[... {omitted:,} characters omitted: showing the first 1,000 and the last 1,000 ...]" in result.output
    assert len(result.output) < 2_200
    text = format_command_result(result)
    assert text.splitlines()[0].startswith("exit code 0") and text.endswith("line 99999")


async def test_output_decoding_replaces_bad_bytes_and_joins_split_characters(workspace: Path) -> None:
    code = ("import sys, time; o = sys.stdout.buffer; o.write(b'\\xff ok \\xc3'); o.flush(); time.sleep(0.2); "
            "o.write(b'\\xa9\\n')")
    result = await run_process([sys.executable, "-c", code], cwd=workspace, limits=LIMITS)
    assert result.output == "\ufffd ok é\n"


async def test_environment_is_scrubbed_and_non_interactive(workspace: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"OPENAI_API_KEY": "sk-test", "FOO_TOKEN": "t", "my_secret": "s", "DB_PASSWORD": "p",
                        "AWS_ACCESS_KEY": "k", "KEEP_ME": "yes"}.items():
        monkeypatch.setenv(name, value)
    tools_dir = tmp_path / "tools"
    result = await run_process([sys.executable, "-c", "import json, os; print(json.dumps(dict(os.environ)))"],
                               cwd=workspace, limits=LIMITS, tools_dir=tools_dir, extra_env={"EXTRA": "1"})
    env = json.loads(result.output)
    for name in ("OPENAI_API_KEY", "FOO_TOKEN", "my_secret", "DB_PASSWORD", "AWS_ACCESS_KEY"):
        assert name not in env
    assert env["KEEP_ME"] == "yes" and env["EXTRA"] == "1"
    assert env["PATH"].split(os.pathsep)[0] == str(tools_dir / "bin")
    assert env["GIT_TERMINAL_PROMPT"] == "0" and env["PAGER"] == "cat" and env["GIT_PAGER"] == "cat"
    assert env["TERM"] == "dumb"


async def test_tools_dir_programs_are_found_by_name(workspace: Path, tmp_path: Path) -> None:
    bin_dir = tmp_path / "tools" / "bin"
    bin_dir.mkdir(parents=True)
    tool = bin_dir / "project-tool"
    tool.write_text("#!/bin/sh\necho from tools dir\n")
    tool.chmod(0o755)
    result = await run_process(["project-tool"], cwd=workspace, limits=LIMITS, tools_dir=tmp_path / "tools")
    assert result.exit_code == 0 and result.output == "from tools dir\n"


async def test_missing_and_unexecutable_programs(workspace: Path) -> None:
    result = await run_process(["no-such-program-xyz", "--help"], cwd=workspace, limits=LIMITS)
    assert result.exit_code == 127
    assert "command not found: 'no-such-program-xyz'" in result.output
    result = await run_process(["./missing.sh"], cwd=workspace, limits=LIMITS)
    assert result.exit_code == 127 and "command not found: './missing.sh'" in result.output
    script = workspace / "script.sh"
    script.write_text("echo hi\n")
    script.chmod(0o644)
    result = await run_process(["./script.sh"], cwd=workspace, limits=LIMITS)
    assert result.exit_code == 126 and "cannot execute './script.sh'" in result.output


async def test_refused_arguments(workspace: Path) -> None:
    with pytest.raises(WorkspaceError, match="not a directory"):
        await run_process(["true"], cwd=workspace / "nope", limits=LIMITS)
    with pytest.raises(WorkspaceError, match="empty command"):
        await run_process([], cwd=workspace, limits=LIMITS)
    with pytest.raises(WorkspaceError, match="NUL byte"):
        await run_process(["echo", "a\0b"], cwd=workspace, limits=LIMITS)
    with pytest.raises(WorkspaceError, match="timeout_s must be a positive"):
        await run_process(["true"], cwd=workspace, limits=LIMITS, timeout_s=-1)


async def test_cancellation_kills_the_child_and_reraises(workspace: Path) -> None:
    pid_file = workspace / "pid"
    task = asyncio.create_task(run_process(["sh", "-c", f"echo $$ > {pid_file}.tmp; mv {pid_file}.tmp {pid_file};"
                                                        " exec sleep 60"], cwd=workspace, limits=LIMITS))
    for _ in range(200):
        if pid_file.exists():
            break
        await asyncio.sleep(0.05)
    pid = int(pid_file.read_text())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await _eventually_gone(pid)


def _result(**changes: object) -> CommandResult:
    base = {"argv": ["x"], "cwd": "/w", "exit_code": 0, "signal": None, "duration_s": 1.23, "output": "ok\n",
            "output_chars": 3, "truncated": False, "timed_out": False}
    base.update(changes)
    return CommandResult(**base)  # type: ignore[arg-type]


def test_format_command_result_headlines() -> None:
    assert format_command_result(_result()) == "exit code 0 in 1.2 s\nok"
    assert format_command_result(_result(output="")) == "exit code 0 in 1.2 s\n(no output)"
    assert format_command_result(_result(exit_code=None, signal=9)).startswith(
        "killed by signal 9 (SIGKILL) after 1.2 s\n")
    assert format_command_result(_result(timed_out=True, duration_s=120.0, exit_code=None, signal=15)).startswith(
        "timed out after 120 s; the process group was killed\n")
    assert format_command_result(_result(cancelled=True)).startswith(
        "cancelled after 1.2 s; the process group was killed\n")


def test_clip_middle() -> None:
    assert clip_middle("short", 10) == "short"
    clipped = clip_middle("a" * 50 + "b" * 50, 20)
    assert clipped.startswith("a" * 10 + "\n[... 80 characters omitted")
    assert clipped.endswith("\n" + "b" * 10)
