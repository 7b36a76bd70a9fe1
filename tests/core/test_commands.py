"""The command parser: every simple command is found, wrappers are looked through, bad syntax is refused."""

from __future__ import annotations

import pytest

from core.commands import CommandParseError, is_write_redirect, normalized_argv, parse_command
from core.errors import WorkspaceError


def argvs(text: str) -> list[tuple[str, ...]]:
    return [p.argv for p in parse_command(text).parts]


def test_plain_command_runs_without_a_shell() -> None:
    parsed = parse_command("pytest -q 'tests/a b.py'")
    assert argvs("pytest -q 'tests/a b.py'") == [("pytest", "-q", "tests/a b.py")]
    assert not parsed.needs_shell
    assert parsed.simple_argv == ("pytest", "-q", "tests/a b.py")


@pytest.mark.parametrize("op", [";", "&&", "||", "|", "|&", "&", "\n"])
def test_operators_split_parts(op: str) -> None:
    parsed = parse_command(f"git status {op} rm -rf build")
    assert [p.argv for p in parsed.parts] == [("git", "status"), ("rm", "-rf", "build")]
    assert parsed.needs_shell and parsed.simple_argv is None


def test_trailing_background_and_semicolon() -> None:
    assert argvs("sleep 5 &") == [("sleep", "5")]
    assert argvs("ls;") == [("ls",)]


def test_quotes_and_escapes_are_removed() -> None:
    assert argvs("""s'u'do "r"m a\\ b""") == [("sudo", "rm", "a b"), ("rm", "a b")]
    assert argvs('echo "a \\"b\\" \\$HOME"') == [("echo", 'a "b" $HOME')]
    assert argvs("echo a\\\nb") == [("echo", "ab")]


def test_ansi_c_quotes_are_decoded() -> None:
    assert argvs("$'\\x73udo' ls") == [("sudo", "ls"), ("ls",)]
    assert argvs("echo $'a\\tb\\101'") == [("echo", "a\tbA")]


def test_comments_are_dropped_but_not_inside_words() -> None:
    assert argvs("ls # rm -rf /") == [("ls",)]
    assert argvs("echo a#b") == [("echo", "a#b")]
    assert parse_command("ls # x").simple_argv == ("ls",)


def test_redirections_are_recorded_with_their_targets() -> None:
    part = parse_command("cmd <in.txt >out.txt 2>>err.log 2>&1 &>all.txt >|force").parts[0]
    assert part.argv == ("cmd",)
    assert part.redirects == (("<", "in.txt"), (">", "out.txt"), ("2>>", "err.log"), ("2>&", "1"),
                              ("&>", "all.txt"), (">|", "force"))
    assert part.write_targets == ("out.txt", "err.log", "all.txt", "force")
    assert part.read_targets == ("in.txt",)
    assert parse_command("ls > x").needs_shell


def test_descriptor_duplication_is_not_a_write() -> None:
    assert not is_write_redirect("2>&", "1")
    assert not is_write_redirect(">&", "-")
    assert is_write_redirect(">&", "file")
    assert not is_write_redirect("<", "file")


def test_here_string_and_heredoc() -> None:
    parsed = parse_command("grep x <<< 'a x b'")
    assert parsed.parts[0].redirects == (("<<<", "a x b"),)
    parsed = parse_command("cat <<EOF\nrm -rf /\n$(whoami)\nEOF\necho done")
    assert [p.argv for p in parsed.parts] == [("cat",), ("whoami",), ("echo", "done")]
    assert parsed.needs_shell


def test_quoted_heredoc_body_is_not_parsed() -> None:
    assert argvs("cat <<'EOF'\n$(rm -rf /)\nEOF") == [("cat",)]
    assert argvs("cat <<-EOF\n\tbody\n\tEOF\nls") == [("cat",), ("ls",)]


def test_command_substitution_parts_are_added() -> None:
    assert ("sudo", "rm", "-rf", "/") in argvs("echo $(sudo rm -rf /)")
    assert ("curl", "x") in argvs('echo "a $(curl x) b"')
    assert ("id",) in argvs("echo `id`")
    assert ("id",) in argvs('echo "`id`"')
    assert ("whoami",) in argvs("echo $(echo $(whoami))")
    assert ("id",) in argvs("echo ${X:-$(id)}")
    assert ("id", "-u") in argvs("echo $((1 + $(id -u)))")
    assert ("ls", "a") in argvs("diff <(ls a) <(ls b)")
    assert ("tee", "log") in argvs("make > >(tee log)")


def test_single_quotes_hide_substitutions() -> None:
    assert argvs("echo '$(rm -rf /)'") == [("echo", "$(rm -rf /)")]
    assert not parse_command("echo '$(x)'").needs_shell


def test_subshells_and_groups() -> None:
    parsed = parse_command("(cd web && npm test) > out.txt")
    assert [p.argv for p in parsed.parts] == [("cd", "web"), ("npm", "test"), ()]
    assert parsed.parts[-1].redirects == ((">", "out.txt"),)
    assert argvs("{ ls; pwd; } | wc -l") == [("ls",), ("pwd",), ("wc", "-l")]
    assert argvs("echo }") == [("echo", "}")]


def test_assignments_are_stripped_and_recorded() -> None:
    part = parse_command("A=1 B='x y' make test").parts[0]
    assert part.argv == ("make", "test")
    assert part.assignments == ("A=1", "B=x y")
    assert parse_command("A=1 make").needs_shell
    assert argvs('"A=1" make') == [("A=1", "make")]


def test_keywords_are_looked_through() -> None:
    assert argvs("if rm x; then echo y; else ls; fi") == [("rm", "x"), ("echo", "y"), ("ls",)]
    assert argvs("while true; do curl x; done") == [("true",), ("curl", "x")]
    assert argvs("! grep x f") == [("grep", "x", "f")]


def test_env_wrapper() -> None:
    part = parse_command("env -i -u HOME X=1 rm -rf x").parts[0]
    assert part.argv == ("rm", "-rf", "x") and part.wrappers == ("env",)
    assert argvs("env -S 'rm -rf x'") == [("rm", "-rf", "x")]
    assert argvs("/usr/bin/env rm") == [("rm",)]


def test_timeout_nice_nohup_time_stdbuf_command_exec_builtin() -> None:
    part = parse_command("timeout -s KILL -k 5 30 nice -n 5 nohup time -p stdbuf -oL command exec builtin ls").parts[0]
    assert part.argv == ("ls",)
    assert part.wrappers == ("timeout", "nice", "nohup", "time", "stdbuf", "command", "exec", "builtin")
    assert argvs("timeout --signal=TERM 5s rm x") == [("rm", "x")]
    assert argvs("nice -10 rm x") == [("rm", "x")]
    assert argvs("timeout 5s -- rm x") == [("rm", "x")]
    assert argvs("busybox sh -c 'rm x'") == [("rm", "x")]
    assert argvs("nice --adjustment=3 rm x") == [("rm", "x")]


def test_time_output_file_is_a_write() -> None:
    part = parse_command("env time -o /etc/passwd ls").parts[0]
    assert part.argv == ("ls",)
    assert part.write_targets == ("/etc/passwd",)


def test_xargs_runs_its_command_or_echo() -> None:
    assert argvs("find . -name x | xargs -0 -n 1 -I{} rm {}") == [("find", ".", "-name", "x"), ("rm", "{}")]
    assert argvs("ls | xargs") == [("ls",), ("echo",)]


def test_unknown_wrapper_option_is_refused_not_guessed() -> None:
    with pytest.raises(CommandParseError, match="'env' is given the option '-Z'"):
        parse_command("env -Z sudo rm")
    with pytest.raises(CommandParseError, match="needs a duration"):
        parse_command("timeout -s KILL")


def test_sudo_is_a_part_of_its_own_and_looked_through() -> None:
    parts = parse_command("sudo -u root -E rm -rf /").parts
    assert [(p.argv, p.wrappers) for p in parts] == [
        (("sudo", "-u", "root", "-E", "rm", "-rf", "/"), ()),
        (("rm", "-rf", "/"), ("sudo",)),
    ]
    assert [p.argv for p in parse_command("doas ls").parts] == [("doas", "ls"), ("ls",)]
    assert [p.argv for p in parse_command("sudo -l").parts] == [("sudo", "-l")]


def test_shell_c_string_is_parsed() -> None:
    parsed = parse_command("bash -lc 'cd x && curl y | sh'")
    assert [(p.argv, p.wrappers) for p in parsed.parts] == [(("cd", "x"), ("bash",)), (("curl", "y"), ("bash",)),
                                                            (("sh",), ("bash",))]
    assert parsed.needs_shell
    assert argvs("sh -e -c 'rm x' name arg") == [("rm", "x")]
    assert argvs("dash -o errexit -c 'ls'") == [("ls",)]
    assert argvs("zsh script.zsh") == [("zsh", "script.zsh")]
    assert argvs("bash -c \"bash -c 'sudo ls'\"") == [("sudo", "ls"), ("ls",)]


def test_find_exec_becomes_a_part() -> None:
    parts = parse_command("find . -name '*.pyc' -exec rm -f {} \\; -execdir sh -c 'curl x' +").parts
    assert [p.argv for p in parts][1:] == [("rm", "-f", "{}"), ("curl", "x")]
    assert parts[1].wrappers == ("find",)
    with pytest.raises(CommandParseError, match="no closing"):
        parse_command("find . -exec rm {}")


def test_eval_and_source_stay_visible() -> None:
    assert argvs("eval 'sudo ls'") == [("eval", "sudo ls"), ("sudo", "ls"), ("ls",)]
    assert argvs("source env.sh") == [("source", "env.sh")]
    assert argvs(". ./env.sh") == [(".", "./env.sh")]
    assert parse_command("source x").needs_shell


def test_expansions_and_globs_are_kept_literally() -> None:
    for text in ("ls *.py", "echo $HOME", "echo ~/x", "echo {a,b}", "ls [ab].py", 'echo "$X"'):
        parsed = parse_command(text)
        assert parsed.needs_shell and parsed.simple_argv is None, text
    assert argvs("echo $HOME *.py") == [("echo", "$HOME", "*.py")]
    assert parse_command("[ -f x ]").parts[0].argv == ("[", "-f", "x", "]")


def test_arithmetic_is_not_a_command_unless_bash_reads_subshells() -> None:
    assert argvs("((i++)) && ls") == [("ls",)]
    assert argvs("echo $((1 + 2))") == [("echo", "$((1 + 2))")]
    # bash runs these as subshells / a command substitution: `((echo a) ; (rm x))` really runs rm.
    assert argvs("((echo a) ; (rm x))") == [("echo", "a"), ("rm", "x")]
    assert ("rm", "x") in argvs("echo $((rm x) )")


def test_several_lines_need_a_shell() -> None:
    parsed = parse_command("ls\npwd\n")
    assert [p.argv for p in parsed.parts] == [("ls",), ("pwd",)]
    assert parsed.needs_shell and parsed.simple_argv is None
    assert parse_command("ls\n").simple_argv == ("ls",)


def test_simple_argv_keeps_wrappers() -> None:
    assert parse_command("timeout 5 pytest").simple_argv == ("timeout", "5", "pytest")
    assert parse_command("cd x").simple_argv is None  # a builtin: only a shell can run it


def test_normalized_argv() -> None:
    assert normalized_argv(("/usr/bin/git", "-C", "repo", "--no-pager", "-c", "a=b", "push")) == ("git", "push")
    assert normalized_argv(("./node_modules/.bin/jest",)) == ("jest",)
    assert normalized_argv(()) == ()


@pytest.mark.parametrize(("text", "fragment"), [
    ("echo 'x", "single quote"),
    ('echo "x', "double quote"),
    ("echo `x", "backquote"),
    ("echo $(x", "'(' is never closed"),
    ("(ls", "'(' is never closed"),
    ("{ ls; ", "'{' is never closed"),
    ("ls)", "unexpected ')'"),
    ("ls &&", "nothing follows '&&'"),
    ("| ls", "unexpected '|'"),
    ("ls ; ; ls", "unexpected ';'"),
    ("echo (", "unexpected '('"),
    ("echo >", "has no target"),
    ("cat <<EOF", "has no body"),
    ("cat <<EOF\nx\n", "never closed"),
    ("echo ${x", "'${' is never closed"),
    ("bash -c", "no command string"),
    ("", "empty"),
    ("   # only a comment", "no command"),
    ("case x in a) ls;; esac", "unexpected ')'"),
])
def test_parse_errors_tell_the_model_what_to_do(text: str, fragment: str) -> None:
    with pytest.raises(CommandParseError) as err:
        parse_command(text)
    assert fragment in err.value.message
    assert isinstance(err.value, WorkspaceError)


def test_deep_nesting_is_refused_not_a_crash() -> None:
    with pytest.raises(CommandParseError, match="levels deep"):
        parse_command("echo " + "$(" * 200 + "x" + ")" * 200)
    with pytest.raises(CommandParseError, match="levels deep"):
        parse_command("( " * 500 + "ls" + " )" * 500)


def test_nul_byte_is_refused() -> None:
    with pytest.raises(CommandParseError, match="NUL"):
        parse_command("ls\x00rm")


def test_assignments_alone_and_after_env_are_kept() -> None:
    parts = parse_command("PATH=./bin; ls").parts
    assert [(p.argv, p.assignments) for p in parts] == [((), ("PATH=./bin",)), (("ls",), ())]
    assert parse_command("env -i A=1 B=2 ls").parts[0].assignments == ("A=1", "B=2")


def test_wrappers_refuse_shell_keywords_and_assignments() -> None:
    with pytest.raises(CommandParseError, match=r"cannot run the shell keyword '\{'"):
        parse_command("env { sudo ls; }")
    with pytest.raises(CommandParseError, match="would run a program named 'A=1'"):
        parse_command("timeout 5 A=1 sudo ls")
    with pytest.raises(CommandParseError, match="is not shell syntax but a program name"):
        parse_command("A=1 { sudo ls; }")


def test_keywords_before_groups_and_subshells() -> None:
    assert argvs("time { sudo ls; }") == [("sudo", "ls"), ("ls",)]
    assert argvs("! ( curl x )") == [("curl", "x")]
    assert argvs("if { true; }; then ls; fi") == [("true",), ("ls",)]
