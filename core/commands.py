"""Shell command parser: splits a command line into the simple commands a policy must judge one by one."""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass, field

from core.errors import WorkspaceError

# Deeper nesting than this is either an attack on the parser or not a command a person would write.
MAX_NESTING = 48

_BLANKS = " \t\r"
_WORD_END = set(" \t\r\n;&|()<>")
_OPERATORS = ("&&", "||", "|&", ";;", "|", ";", "&")
_REDIRECT = re.compile(r"(\d{1,9})?(&>>|&>|>>|>\||>&|<<<|<<-|<<|<&|<>|>|<)")
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\+?=")
# Unquoted text that the shell would expand: globs and brace expansion (`[` alone is the test command).
_GLOB = re.compile(r"[*?]|\[[^\]]+\]|\{[^{}]*(?:,|\.\.)[^{}]*\}")
_WRITE_OPS = frozenset({">", ">>", ">|", "&>", "&>>", "<>", ">&"})

# Reserved words that only introduce or close a compound command: the command after them is what runs.
_LEADING_KEYWORDS = frozenset({"!", "if", "then", "elif", "else", "do", "while", "until"})
_KEYWORD_AT = re.compile(r"(?:!|if|then|elif|else|do|while|until|time(?:[ \t]+-p)?)(?=[ \t\n]|$)")
_CLOSING_KEYWORDS = frozenset({"fi", "done", "esac"})
# A wrapper execs a program; given one of these, bash would fail, but a model may mean the group to run.
RESERVED_WORDS = frozenset({"{", "}", "!", "if", "then", "else", "elif", "fi", "do", "done", "while", "until",
                             "for", "case", "esac", "select", "function", "in", "[[", "]]"})
# Builtins that do not exist as programs, so a command using them must run through a shell.
_SHELL_BUILTINS = frozenset({
    "cd", "export", "set", "unset", "alias", "unalias", "source", ".", "eval", "exec", "command", "builtin",
    "time", "read", "pushd", "popd", "ulimit", "umask", "trap", "shift", "exit", "return", "local",
    "declare", "typeset", "readonly", "shopt", "hash", "type", "wait", "jobs", "fg", "bg", "disown", "let",
})
PRIVILEGE_WRAPPERS = frozenset({"sudo", "doas"})
SHELLS = frozenset({"sh", "bash", "zsh", "dash", "ksh"})
_GIT_GLOBAL_WITH_ARG = frozenset({"-C", "-c", "--git-dir", "--work-tree", "--namespace", "--config-env",
                                  "--super-prefix", "--exec-path"})


class CommandParseError(WorkspaceError):
    """The command line could not be parsed; the message tells the model how to write it instead."""


@dataclass(frozen=True)
class CommandPart:
    """One simple command, with the wrappers it was found inside (`env`, `timeout`, `bash -c`...)."""

    argv: tuple[str, ...]
    raw: str
    wrappers: tuple[str, ...] = ()
    redirects: tuple[tuple[str, str], ...] = ()
    assignments: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The program's name as policies see it (`/usr/bin/rm` -> `rm`)."""
        return normalized_argv(self.argv)[0] if self.argv else ""

    @property
    def write_targets(self) -> tuple[str, ...]:
        return tuple(target for op, target in self.redirects if is_write_redirect(op, target))

    @property
    def read_targets(self) -> tuple[str, ...]:
        return tuple(target for op, target in self.redirects if op.lstrip("0123456789") in ("<", "<>"))


@dataclass(frozen=True)
class ParsedCommand:
    """A parsed command line: every simple command in it, and whether running it needs a shell."""

    text: str
    parts: tuple[CommandPart, ...]
    needs_shell: bool
    _words: tuple[str, ...] | None = field(default=None, repr=False)

    @property
    def simple_argv(self) -> tuple[str, ...] | None:
        """The argv to execute directly when the line is one plain command with no shell features."""
        return None if self.needs_shell else self._words


def is_write_redirect(op: str, target: str) -> bool:
    """Does this redirection write to the file named by target (not just duplicate a descriptor)?"""
    bare = op.lstrip("0123456789")
    if bare not in _WRITE_OPS:
        return False
    return not (bare == ">&" and (target.isdigit() or target == "-"))


def normalized_argv(argv: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """argv as rules match it: the program's basename, and git's global options dropped.

    Without this `/usr/bin/sudo` and `git -C repo push` would slip past rules on `sudo` and `git push`.
    """
    words = list(argv)
    if not words:
        return ()
    if "/" in words[0] and not words[0].endswith("/"):
        words[0] = posixpath.basename(words[0])
    if words[0] == "git":
        i = 1
        while i < len(words) and words[i].startswith("-") and words[i] != "--":
            i += 2 if words[i] in _GIT_GLOBAL_WITH_ARG else 1
        words = ["git", *words[i:]]
    return tuple(words)


def parse_command(text: str) -> ParsedCommand:
    """Parse a command line; CommandParseError (sent to the model) when it is not valid shell syntax."""
    if not isinstance(text, str):
        raise CommandParseError("the command must be a string: pass it as one line of shell text")
    if "\x00" in text:
        raise CommandParseError("the command contains a NUL byte: remove it")
    if not text.strip():
        raise CommandParseError("the command is empty: pass the command line to run, e.g. 'pytest -q'")
    parser = _Parser(text, depth=0)
    parser.parse_all()
    if not parser.parts:
        raise CommandParseError("the command contains no command (only comments or blank lines): pass a command")
    # Several commands (one per line, say) need a shell to run them in order.
    needs_shell = parser.needs_shell or len(parser.top_level) != 1
    words = parser.top_level[0] if len(parser.top_level) == 1 else None
    return ParsedCommand(text=text, parts=tuple(parser.parts), needs_shell=needs_shell, _words=words)


@dataclass
class _Word:
    value: str
    raw: str
    quoted: bool = False
    expanded: bool = False  # contains $..., `...`, globs: its value is only known when the shell runs


@dataclass(frozen=True)
class _WrapperSpec:
    """How a wrapper program takes options before the command it runs."""

    flags: str = ""  # short options without an argument
    arg_opts: str = ""  # short options taking an argument (`-n 5` or `-n5`)
    inline_opts: str = ""  # short options with an optional argument glued to them (`xargs -i{}`)
    long_flags: frozenset[str] = frozenset()
    long_arg: frozenset[str] = frozenset()  # `--signal KILL` or `--signal=KILL`
    positional: int = 0  # words before the command (timeout's duration)
    numeric: bool = False  # `nice -10`
    empty_command: tuple[str, ...] = ()  # what runs when no command is given (`xargs` runs echo)


_WRAPPERS: dict[str, _WrapperSpec] = {
    "env": _WrapperSpec(flags="i0v", arg_opts="uCS",
                        long_flags=frozenset({"--ignore-environment", "--null", "--debug", "--block-signal",
                                              "--default-signal", "--ignore-signal", "--list-signal-handling"}),
                        long_arg=frozenset({"--unset", "--chdir", "--split-string"})),
    "timeout": _WrapperSpec(flags="v", arg_opts="sk", long_flags=frozenset({"--foreground", "--preserve-status",
                                                                            "--verbose"}),
                            long_arg=frozenset({"--signal", "--kill-after"}), positional=1),
    "nice": _WrapperSpec(arg_opts="n", long_arg=frozenset({"--adjustment"}), numeric=True),
    "nohup": _WrapperSpec(),
    "busybox": _WrapperSpec(),  # `busybox sh -c ...` runs the applet named next
    "time": _WrapperSpec(flags="pvaq", arg_opts="fo",
                         long_flags=frozenset({"--portability", "--verbose", "--append", "--quiet"}),
                         long_arg=frozenset({"--format", "--output"})),
    "command": _WrapperSpec(flags="pvV"),
    "exec": _WrapperSpec(flags="cl", arg_opts="a"),
    "builtin": _WrapperSpec(),
    "stdbuf": _WrapperSpec(arg_opts="ioe", long_arg=frozenset({"--input", "--output", "--error"})),
    "xargs": _WrapperSpec(flags="0rtpxo", arg_opts="adEILnPs", inline_opts="iel",
                          long_flags=frozenset({"--null", "--no-run-if-empty", "--verbose", "--interactive",
                                                "--exit", "--open-tty", "--show-limits"}),
                          long_arg=frozenset({"--arg-file", "--delimiter", "--eof", "--replace", "--max-lines",
                                              "--max-args", "--max-procs", "--max-chars",
                                              "--process-slot-var"}),
                          empty_command=("echo",)),
}
_SUDO_ARG_OPTS = frozenset("ugCDhprtTUa")
_DOAS_ARG_OPTS = frozenset("uC")
_SHELL_LONG_FLAGS = frozenset({"--login", "--norc", "--noprofile", "--posix", "--restricted", "--verbose",
                               "--debug", "--noediting", "--protected"})
_SHELL_LONG_ARG = frozenset({"--rcfile", "--init-file"})
_FIND_EXEC = frozenset({"-exec", "-execdir", "-ok", "-okdir"})


class _Parser:
    """Recursive-descent reader of POSIX/bash syntax, collecting every simple command it meets."""

    def __init__(self, text: str, depth: int) -> None:
        if depth > MAX_NESTING:
            raise CommandParseError(f"the command nests substitutions, subshells or 'sh -c' more than "
                                    f"{MAX_NESTING} levels deep: simplify it")
        self.text = text
        self.pos = 0
        self.depth = depth
        self.parts: list[CommandPart] = []
        self.needs_shell = False
        self.top_level: list[tuple[str, ...]] = []  # words of simple commands outside any nesting
        self.nesting = 0
        self.heredocs: list[tuple[str, bool, bool]] = []  # (delimiter, expands, strip_tabs)

    # ---- errors and small helpers -------------------------------------------------------------------
    def error(self, problem: str, fix: str) -> CommandParseError:
        return CommandParseError(f"cannot parse the command: {problem}; {fix}")

    def peek(self, offset: int = 0) -> str:
        i = self.pos + offset
        return self.text[i] if i < len(self.text) else ""

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def skip_blanks(self) -> None:
        text = self.text
        while self.pos < len(text):
            c = text[self.pos]
            if c in _BLANKS:
                self.pos += 1
            elif c == "\\" and text.startswith("\\\n", self.pos):
                self.pos += 2
            else:
                return

    def skip_comment(self) -> None:
        end = self.text.find("\n", self.pos)
        self.pos = len(self.text) if end < 0 else end

    def operator(self) -> str | None:
        if self.text.startswith("&>", self.pos):
            return None  # a redirection, not `&`
        for op in _OPERATORS:
            if self.text.startswith(op, self.pos):
                return op
        return None

    @property
    def level(self) -> int:
        return self.depth + self.nesting

    def child(self, text: str) -> _Parser:
        """Parse text found inside this command (backticks, `sh -c`, eval) and adopt its parts."""
        sub = _Parser(text, self.level + 1)
        sub.parse_all()
        self.parts.extend(sub.parts)
        return sub

    # ---- lists and commands -------------------------------------------------------------------------
    def parse_all(self) -> None:
        self.parse_list(None)
        if self.heredocs:
            raise self.error(f"the here-document '{self.heredocs[0][0]}' has no body",
                             "put its lines after the command, ending with a line holding only the delimiter")

    def parse_list(self, closer: str | None) -> None:
        """Commands separated by operators, up to `closer` (`)` or `}`) or the end of the text."""
        self.depth_guard()
        pending: str | None = None  # a binary operator still waiting for its right-hand command
        while True:
            self.skip_blanks()
            if self.peek() == "#":
                self.skip_comment()
            if self.at_end():
                if closer:
                    raise self.error(f"'{'(' if closer == ')' else '{'}' is never closed",
                                     f"add the matching '{closer}' or quote the character")
                if pending:
                    raise self.error(f"nothing follows '{pending}'", "add the command after it or remove it")
                return
            c = self.peek()
            if c == "\n":
                self.newline()
                continue
            if c == ")" or (closer == "}" and c == "}" and self.peek(1) in ("", *_WORD_END)):
                if c != closer:
                    raise self.error(f"unexpected '{c}'", "remove it, balance it, or quote it")
                if pending:
                    raise self.error(f"nothing follows '{pending}' before '{c}'", "add the command after it")
                self.pos += 1
                return
            op = self.operator()
            if op:
                raise self.error(f"unexpected '{op}' with no command before it", "remove it or add the command")
            self.parse_command()
            self.skip_blanks()
            if self.peek() == "#":
                self.skip_comment()
            op = self.operator()
            pending = None
            if op:
                if op == ";;":
                    raise self.error("';;' outside a case statement",
                                     "use a single ';' (case statements are not supported: use if/elif)")
                self.pos += len(op)
                self.needs_shell = True
                if op not in (";", "&"):
                    pending = op
            elif not self.at_end() and self.peek() not in "\n)}":
                raise self.error(f"unexpected '{self.peek()}' after a command", "quote it or remove it")

    def newline(self) -> None:
        """Consume a newline and the bodies of here-documents started on the line it ends."""
        self.pos += 1
        while self.heredocs:
            delimiter, expands, strip_tabs = self.heredocs.pop(0)
            body_start = self.pos
            while True:
                if self.at_end():
                    raise self.error(f"the here-document '{delimiter}' is never closed",
                                     f"end it with a line holding only {delimiter}")
                end = self.text.find("\n", self.pos)
                end = len(self.text) if end < 0 else end
                line = self.text[self.pos:end]
                body_end = self.pos
                self.pos = min(end + 1, len(self.text))
                if (line.lstrip("\t") if strip_tabs else line) == delimiter:
                    break
            if expands:
                sub = _Parser(self.text[body_start:body_end], self.level + 1)
                sub.read_double_quoted(until_end=True)
                self.parts.extend(sub.parts)

    def parse_command(self) -> None:
        self.skip_leading_keywords()
        c = self.peek()
        if c == "(":
            self.needs_shell = True
            self.nesting += 1
            start = self.pos
            self.pos += 2
            if not (self.text.startswith("((", start) and self.read_arithmetic()):
                # Not `((expr))`: bash reads it as nested subshells, and so must we.
                self.pos = start + 1
                self.parse_list(")")
            self.nesting -= 1
            self.trailing_redirects()
        elif c == "{" and self.peek(1) in (" ", "\t", "\n"):
            self.needs_shell = True
            self.nesting += 1
            self.pos += 1
            self.parse_list("}")
            self.nesting -= 1
            self.trailing_redirects()
        else:
            self.parse_simple()

    def skip_leading_keywords(self) -> None:
        """`!`, `if`, `while`, `time -p`... before a command: what follows may be a group or subshell."""
        while True:
            m = _KEYWORD_AT.match(self.text, self.pos)
            if not m:
                return
            self.needs_shell = True
            self.pos = m.end()
            self.skip_blanks()

    def trailing_redirects(self) -> None:
        """Redirections after `( ... )` or `{ ...; }` apply to the whole group: recorded as a part of their own."""
        start = self.pos
        redirects: list[tuple[str, str]] = []
        while True:
            self.skip_blanks()
            m = _REDIRECT.match(self.text, self.pos)
            if not m:
                break
            redirects.append(self.read_redirect(m))
        if redirects:
            self.parts.append(CommandPart((), self.text[start:self.pos].strip(), (), tuple(redirects), ()))
        self.skip_blanks()
        if not self.at_end() and self.peek() not in _WORD_END and self.peek() != "#":
            raise self.error(f"unexpected word after a closing bracket at '{self.text[self.pos:self.pos + 20]}'",
                             "put an operator such as ';' or '&&' before it")

    def parse_simple(self) -> None:
        start = end = self.pos
        words: list[_Word] = []
        redirects: list[tuple[str, str]] = []
        while True:
            end = max(end, self.pos)
            self.skip_blanks()
            if self.at_end():
                break
            c = self.peek()
            if c == "#":  # at the start of a word: a comment to the end of the line
                self.skip_comment()
                break
            if c in "<>" and self.peek(1) == "(":
                word = self.read_word()
                assert word is not None
                words.append(word)
                continue
            m = _REDIRECT.match(self.text, self.pos) if (c in "<>&" or c.isdigit()) else None
            if m and (not m.group(2).startswith("&") or c == "&"):
                redirects.append(self.read_redirect(m))
                continue
            if c in "\n;&|)":
                break
            if c == "(":
                raise self.error("unexpected '(' inside a command",
                                 "quote it (\"(\"), or start a subshell only at the beginning of a command")
            word = self.read_word()
            if word is None:
                break
            words.append(word)
        raw = self.text[start:end].strip()
        self.finish_simple(words, redirects, raw)

    def finish_simple(self, words: list[_Word], redirects: list[tuple[str, str]], raw: str) -> None:
        i = 0
        while i < len(words) and not words[i].quoted and words[i].value in _LEADING_KEYWORDS:
            self.needs_shell = True
            i += 1
        if i < len(words) and len(words) - i == 1 and not words[i].quoted and words[i].value in _CLOSING_KEYWORDS:
            self.needs_shell = True
            i += 1
        assignments: list[str] = []
        while i < len(words) and _ASSIGNMENT.match(words[i].raw):
            assignments.append(words[i].value)
            self.needs_shell = True
            i += 1
        rest = words[i:]
        argv = tuple(w.value for w in rest)
        if assignments and argv and not rest[0].quoted and argv[0] in RESERVED_WORDS:
            raise self.error(f"'{argv[0]}' after the assignment '{assignments[-1]}' is not shell syntax but a "
                             f"program name", f"put the assignment inside, e.g. {{ {assignments[-1]} cmd; }}")
        if any(w.expanded for w in words):
            self.needs_shell = True
        if redirects:
            self.needs_shell = True
        if argv and normalized_argv(argv)[0] in _SHELL_BUILTINS:
            self.needs_shell = True
        if self.nesting == 0:
            self.top_level.append(tuple(w.value for w in words))
        self.parts.extend(self.unwrap(argv, (), tuple(redirects), tuple(assignments), raw))

    # ---- wrappers -----------------------------------------------------------------------------------
    def unwrap(self, argv: tuple[str, ...], wrappers: tuple[str, ...], redirects: tuple[tuple[str, str], ...],
               assignments: tuple[str, ...], raw: str) -> list[CommandPart]:
        """The parts a command really runs: look through wrappers to the command they start."""
        if not argv:
            # Kept when it still does something: creates a file, or sets a variable later commands see.
            return [CommandPart((), raw, wrappers, redirects, assignments)] if redirects or assignments else []
        name = normalized_argv(argv)[0]
        here = CommandPart(argv, raw, wrappers, redirects, assignments)
        if name in PRIVILEGE_WRAPPERS:
            # Kept as a part of its own (so a rule on `sudo` judges it) and looked through.
            rest = self.skip_privilege_options(argv, _SUDO_ARG_OPTS if name == "sudo" else _DOAS_ARG_OPTS)
            self.refuse_keyword(name, rest)
            own = CommandPart(argv, raw, wrappers, (), assignments)
            inner = self.unwrap(rest, (*wrappers, name), redirects, (), shlex.join(rest)) if rest else []
            return [own, *inner]
        if name in _WRAPPERS:
            rest, extra_redirects = self.skip_wrapper_options(name, argv)
            self.refuse_keyword(name, rest)
            if not rest:
                rest = _WRAPPERS[name].empty_command
                if not rest:
                    return [here]
            if name == "env":  # `env VAR=x cmd` sets the variable just like `VAR=x cmd`
                assignments += tuple(w for w in argv[1:len(argv) - len(rest)] if _ASSIGNMENT.match(w))
            return self.unwrap(rest, (*wrappers, name), redirects + extra_redirects, assignments, shlex.join(rest))
        if name in SHELLS:
            script = self.shell_command_string(name, argv)
            if script is None:
                return [here]
            self.needs_shell = True
            sub = _Parser(script, self.level + 1)
            sub.parse_all()
            return [CommandPart(p.argv, p.raw, (*wrappers, name, *p.wrappers), p.redirects + redirects,
                                p.assignments) for p in sub.parts]
        if name == "eval":
            self.needs_shell = True
            sub = _Parser(" ".join(argv[1:]), self.level + 1) if len(argv) > 1 else None
            if sub is None:
                return [here]
            sub.parse_all()
            return [here, *(CommandPart(p.argv, p.raw, (*wrappers, "eval", *p.wrappers), p.redirects,
                                        p.assignments) for p in sub.parts)]
        if name == "find":
            return self.unwrap_find(argv, wrappers, redirects, assignments, raw)
        return [here]

    def refuse_keyword(self, wrapper: str, rest: tuple[str, ...]) -> None:
        """A wrapper runs a program: shell keywords and assignments after it are not what they seem."""
        if rest and rest[0] in RESERVED_WORDS:
            raise self.error(f"'{wrapper}' cannot run the shell keyword '{rest[0]}' (it runs programs, not shell "
                             f"syntax)", f"run it as {wrapper} bash -c '...' or drop '{wrapper}'")
        if rest and _ASSIGNMENT.match(rest[0]) and wrapper != "env":
            raise self.error(f"'{wrapper}' would run a program named '{rest[0]}'",
                             f"put the assignment before '{wrapper}' or use env {rest[0]}")

    def skip_privilege_options(self, argv: tuple[str, ...], arg_opts: frozenset[str]) -> tuple[str, ...]:
        i = 1
        while i < len(argv):
            w = argv[i]
            if w == "--":
                i += 1
                break
            if w.startswith("--"):
                i += 1
                continue
            if w.startswith("-") and len(w) > 1:
                takes = next((j for j, ch in enumerate(w[1:], 1) if ch in arg_opts), None)
                i += 2 if takes is not None and takes == len(w) - 1 else 1
                continue
            if _ASSIGNMENT.match(w):
                i += 1
                continue
            break
        return argv[i:]

    def skip_wrapper_options(self, name: str, argv: tuple[str, ...]
                             ) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
        """Skip a wrapper's options; an option we do not know is refused rather than guessed at."""
        spec = _WRAPPERS[name]
        words = list(argv)
        extra: list[tuple[str, str]] = []
        i = 1

        def unknown(option: str) -> CommandParseError:
            return self.error(f"'{name}' is given the option '{option}', which dev-agent does not know, so it "
                              f"cannot tell which command runs", f"run the command without '{name}' or drop "
                              f"'{option}'")

        def take_arg(option: str, value: str | None) -> str:
            nonlocal i
            if value is not None:
                return value
            if i + 1 >= len(words):
                raise self.error(f"'{name} {option}' is missing its value", f"give {option} a value")
            i += 1
            return words[i]

        while i < len(words):
            w = words[i]
            if w == "--":
                i += 1
                break
            if name == "env" and w == "-":
                i += 1
                continue
            if w.startswith("--") and len(w) > 2:
                opt, eq, val = w.partition("=")
                if opt in spec.long_flags:
                    pass
                elif opt in spec.long_arg:
                    value = take_arg(opt, val if eq else None)
                    if opt == "--split-string":
                        words[i + 1:i + 1] = self.split_string(value)
                    elif opt == "--output" and name == "time":
                        extra.append((">", value))
                else:
                    raise unknown(opt)
                i += 1
                continue
            if w.startswith("-") and len(w) > 1:
                if spec.numeric and w[1:].isdigit():
                    i += 1
                    continue
                j = 1
                while j < len(w):
                    ch = w[j]
                    if ch in spec.flags:
                        j += 1
                    elif ch in spec.inline_opts:
                        break
                    elif ch in spec.arg_opts:
                        value = take_arg(f"-{ch}", w[j + 1:] or None)
                        if name == "env" and ch == "S":
                            words[i + 1:i + 1] = self.split_string(value)
                        elif name == "time" and ch == "o":
                            extra.append((">", value))
                        break
                    else:
                        raise unknown(f"-{ch}")
                i += 1
                continue
            if name == "env" and _ASSIGNMENT.match(w):
                i += 1
                continue
            break
        if spec.positional:
            if i + spec.positional > len(words):
                raise self.error(f"'{name}' needs a duration and then the command", f"e.g. '{name} 60 pytest'")
            i += spec.positional
            if i < len(words) and words[i] == "--":
                i += 1
        return tuple(words[i:]), tuple(extra)

    def split_string(self, value: str) -> list[str]:
        try:
            return shlex.split(value)
        except ValueError as exc:
            raise self.error(f"env -S string {value!r}: {exc}", "balance its quotes") from None

    def shell_command_string(self, name: str, argv: tuple[str, ...]) -> str | None:
        """The script of `bash -c SCRIPT`, or None when the shell runs a file or reads stdin."""
        i = 1
        has_c = False
        while i < len(argv):
            w = argv[i]
            if w in ("--", "-"):
                i += 1
                break
            if w.startswith("--"):
                if w in _SHELL_LONG_ARG:
                    i += 2
                elif w in _SHELL_LONG_FLAGS:
                    i += 1
                else:
                    raise self.error(f"'{name}' is given the option '{w}', which dev-agent does not know",
                                     f"run the command without '{name}' or drop '{w}'")
                continue
            if len(w) > 1 and w[0] in "-+":
                letters = w[1:]
                if not letters.isalpha():
                    raise self.error(f"'{name}' is given the option '{w}', which dev-agent does not know",
                                     f"run the command without '{name}' or drop '{w}'")
                has_c = has_c or "c" in letters
                i += 2 if ("o" in letters or "O" in letters) else 1
                continue
            break
        if not has_c:
            return None
        if i >= len(argv):
            raise self.error(f"'{name} -c' has no command string", f"write {name} -c 'the commands'")
        return argv[i]

    def unwrap_find(self, argv: tuple[str, ...], wrappers: tuple[str, ...], redirects: tuple[tuple[str, str], ...],
                    assignments: tuple[str, ...], raw: str) -> list[CommandPart]:
        parts = [CommandPart(argv, raw, wrappers, redirects, assignments)]
        i = 1
        while i < len(argv):
            if argv[i] not in _FIND_EXEC:
                i += 1
                continue
            end = next((j for j in range(i + 1, len(argv)) if argv[j] in (";", "+")), None)
            if end is None:
                raise self.error(f"find {argv[i]} has no closing ';' or '+'", f"end it with \\; e.g. "
                                 f"find . -name '*.py' {argv[i]} wc -l {{}} \\;")
            command = argv[i + 1:end]
            self.refuse_keyword(f"find {argv[i]}", command)
            if not command:
                raise self.error(f"find {argv[i]} has no command", "put the command between it and ';'")
            parts.extend(self.unwrap(command, (*wrappers, "find"), (), (), shlex.join(command)))
            i = end + 1
        return parts

    # ---- redirections -------------------------------------------------------------------------------
    def read_redirect(self, m: re.Match[str]) -> tuple[str, str]:
        fd, op = m.group(1) or "", m.group(2)
        self.pos = m.end()
        self.needs_shell = True
        self.skip_blanks()
        target_starts = not self.at_end() and (self.peek() not in _WORD_END
                                               or self.text.startswith(("<(", ">("), self.pos))
        word = self.read_word() if target_starts else None
        if word is None:
            raise self.error(f"the redirection '{fd}{op}' has no target", "put a file name after it")
        if op in ("<<", "<<-"):
            expands = not word.quoted and "\\" not in word.raw
            self.heredocs.append((word.value, expands, op == "<<-"))
        return fd + op, word.value

    # ---- words --------------------------------------------------------------------------------------
    def read_word(self) -> _Word | None:
        """One shell word with its quotes removed; expansions are kept as written."""
        text = self.text
        start = self.pos
        out: list[str] = []
        bare: list[str] = []  # the unquoted characters, to spot brace expansion
        word = _Word("", "")
        if text.startswith(("<(", ">("), self.pos):
            self.pos += 2
            self.nesting += 1
            self.parse_list(")")
            self.nesting -= 1
            self.needs_shell = True
            word.expanded = True
            out.append(text[start:self.pos])
        while self.pos < len(text):
            c = text[self.pos]
            if c in _WORD_END:
                break
            if c == "\\":
                nxt = text[self.pos + 1:self.pos + 2]
                if nxt == "\n":
                    self.pos += 2
                    continue
                out.append(nxt or "\\")
                word.quoted = True
                self.pos += 2 if nxt else 1
            elif c == "'":
                end = text.find("'", self.pos + 1)
                if end < 0:
                    raise self.error("a single quote (') is never closed", "add the closing ' or escape it as \\'")
                out.append(text[self.pos + 1:end])
                word.quoted = True
                self.pos = end + 1
            elif c == '"':
                self.pos += 1
                value, expanded = self.read_double_quoted()
                out.append(value)
                word.quoted = True
                word.expanded = word.expanded or expanded
            elif c == "$" and text.startswith("$'", self.pos):
                self.pos += 2
                out.append(self.read_ansi_c())
                word.quoted = True
                self.needs_shell = True
            elif c == "$" and text.startswith('$"', self.pos):
                self.pos += 2
                value, expanded = self.read_double_quoted()
                out.append(value)
                word.quoted = True
                word.expanded = word.expanded or expanded
                self.needs_shell = True
            elif c in "$`":
                literal = self.read_expansion()
                out.append(literal)
                if literal != "$":
                    word.expanded = True
            else:
                if c == "~" and self.pos == start:
                    word.expanded = True
                out.append(c)
                bare.append(c)
                self.pos += 1
        if self.pos == start:
            return None
        if _GLOB.search("".join(bare)):
            word.expanded = True
        word.value = "".join(out)
        word.raw = text[start:self.pos]
        return word

    def read_double_quoted(self, *, until_end: bool = False) -> tuple[str, bool]:
        """The inside of "..." (pos just after the opening quote); also here-document bodies."""
        text = self.text
        out: list[str] = []
        expanded = False
        while True:
            if self.pos >= len(text):
                if until_end:
                    return "".join(out), expanded
                raise self.error('a double quote (") is never closed', 'add the closing " or escape it as \\"')
            c = text[self.pos]
            if c == '"' and not until_end:
                self.pos += 1
                return "".join(out), expanded
            if c == "\\":
                nxt = text[self.pos + 1:self.pos + 2]
                if nxt in ("$", "`", '"', "\\") and nxt:
                    out.append(nxt)
                    self.pos += 2
                elif nxt == "\n":
                    self.pos += 2
                else:
                    out.append("\\")
                    self.pos += 1
            elif c in "$`":
                literal = self.read_expansion()
                out.append(literal)
                expanded = expanded or literal != "$"
            else:
                out.append(c)
                self.pos += 1

    def read_expansion(self) -> str:
        """`$(...)`, `$((...))`, `${...}`, `$name` or a backquoted command (pos on `$` or the backquote).

        Returns the text as written: the value is only known when the shell runs it. Commands inside
        substitutions are parsed and become parts of their own.
        """
        text = self.text
        start = self.pos
        self.needs_shell = True
        if text[start] == "`":
            self.pos += 1
            inner: list[str] = []
            while True:
                if self.pos >= len(text):
                    raise self.error("a backquote (`) is never closed", "close it, or better use $(...)")
                c = text[self.pos]
                if c == "`":
                    self.pos += 1
                    break
                if c == "\\" and text[self.pos + 1:self.pos + 2] in ("`", "\\", "$"):
                    inner.append(text[self.pos + 1])
                    self.pos += 2
                    continue
                inner.append(c)
                self.pos += 1
            self.nesting += 1
            self.child("".join(inner))
            self.nesting -= 1
            return text[start:self.pos]
        if text.startswith("$((", start):
            self.pos += 3
            if self.read_arithmetic():
                return text[start:self.pos]
        if text.startswith("$(", start):
            self.pos = start + 2
            self.nesting += 1
            self.parse_list(")")
            self.nesting -= 1
        elif text.startswith("${", start):
            self.pos += 2
            self.read_braced_parameter()
        else:
            m = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*|[0-9@*#?$!-])").match(text, start)
            self.pos = m.end() if m else start + 1
        return text[start:self.pos]

    def read_arithmetic(self) -> bool:
        """After `((` or `$((`: skip an arithmetic expression, parsing command substitutions inside.

        Like bash, it is arithmetic only when the `)` matching the second `(` is followed at once by
        another `)`; otherwise (`((cmd) ; (cmd))`) it returns False and the caller reads subshells.
        """
        self.depth_guard()
        depth = 2
        text = self.text
        while True:
            if self.pos >= len(text):
                raise self.error("an arithmetic '((' is never closed", "close it with '))'")
            c = text[self.pos]
            if c in "$`" and (c == "`" or text[self.pos + 1:self.pos + 2] in ("(", "{")):
                self.read_expansion()
                continue
            self.pos += 1
            if c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
                if depth == 1:
                    if self.peek() == ")":
                        self.pos += 1
                        return True
                    return False

    def read_braced_parameter(self) -> None:
        """Skip to the `}` closing `${`, parsing quotes and substitutions inside (`${x:-$(cmd)}`)."""
        self.depth_guard()
        text = self.text
        depth = 1
        while True:
            if self.pos >= len(text):
                raise self.error("a '${' is never closed", "close it with '}'")
            c = text[self.pos]
            if c == "}":
                depth -= 1
                self.pos += 1
                if depth == 0:
                    return
            elif c == "{":
                depth += 1
                self.pos += 1
            elif c == "\\":
                self.pos += 2
            elif c == "'":
                end = text.find("'", self.pos + 1)
                if end < 0:
                    raise self.error("a single quote (') is never closed", "add the closing '")
                self.pos = end + 1
            elif c == '"':
                self.pos += 1
                self.read_double_quoted()
            elif c in "$`":
                self.read_expansion()
            else:
                self.pos += 1

    def depth_guard(self) -> None:
        if self.nesting + self.depth > MAX_NESTING:
            raise CommandParseError(f"the command nests more than {MAX_NESTING} levels deep: simplify it")

    def read_ansi_c(self) -> str:
        """The inside of $'...' with its backslash escapes decoded (so `$'\\x73udo'` is seen as sudo)."""
        text = self.text
        out: list[str] = []
        while True:
            if self.pos >= len(text):
                raise self.error("a $'...' string is never closed", "add the closing '")
            c = text[self.pos]
            if c == "'":
                self.pos += 1
                return "".join(out)
            if c != "\\" or self.pos + 1 >= len(text):
                out.append(c)
                self.pos += 1
                continue
            nxt = text[self.pos + 1]
            self.pos += 2
            simple = {"a": "\a", "b": "\b", "e": "\x1b", "E": "\x1b", "f": "\f", "n": "\n", "r": "\r",
                      "t": "\t", "v": "\v", "\\": "\\", "'": "'", '"': '"', "?": "?"}
            if nxt in simple:
                out.append(simple[nxt])
            elif nxt in "01234567":
                m = re.compile(r"[0-7]{1,2}").match(text, self.pos)
                digits = nxt + (m.group() if m else "")
                self.pos += len(digits) - 1
                out.append(chr(int(digits, 8) & 0xFF))
            elif nxt in "xuU":
                width = {"x": 2, "u": 4, "U": 8}[nxt]
                m = re.compile(f"[0-9A-Fa-f]{{1,{width}}}").match(text, self.pos)
                if not m:
                    out.append("\\" + nxt)
                    continue
                self.pos = m.end()
                code = int(m.group(), 16)
                out.append(chr(code) if code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else "\ufffd")
            elif nxt == "c" and self.pos < len(text):
                out.append(chr(ord(text[self.pos]) & 0x1F))
                self.pos += 1
            else:
                out.append("\\" + nxt)
