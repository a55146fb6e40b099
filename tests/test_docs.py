"""The docs cannot drift from the code: docs/cli.md names every option of every subcommand and no
option that does not exist, and every `python -m bench ...` command in the README and docs/ parses
with the real parser."""

import argparse
import re
import shlex

import pytest

from bench.cli import build_parser
from tests.conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "gpu" / "README.md"]


def _options() -> dict[str, set[str]]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    out = {"": {o for a in parser._actions for o in a.option_strings if o.startswith("--") and o != "--help"}}
    for name, sp in sub.choices.items():
        out[name] = {o for a in sp._actions for o in a.option_strings if o.startswith("--") and o != "--help"}
    return out


def test_cli_md_names_every_option_and_no_other():
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`(--[a-z0-9][a-z0-9-]*)", text))
    options = _options()
    missing = sorted(f"{cmd or 'bench'} {o}" for cmd, opts in options.items() for o in opts if o not in named)
    assert not missing, f"docs/cli.md does not name: {', '.join(missing)}"
    every = set().union(*options.values(), {"--help"})
    unknown = sorted(named - every)
    assert not unknown, f"docs/cli.md names options no parser has: {', '.join(unknown)}"
    for cmd in options:
        if cmd:
            assert f"`{cmd}" in text or f"bench {cmd}" in text, f"docs/cli.md does not name the subcommand {cmd}"


def _commands():
    """Every `python -m bench ARGS` in the docs: code-block lines (with their continuations) and inline code."""
    found = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8").replace("\\\n", " ")
        candidates = re.findall(r"`(python3? -m bench [^`]+)`", text)
        candidates += [line.strip() for line in text.splitlines() if re.match(r"\s*python3? -m bench ", line)]
        for cmd in candidates:
            cmd = re.split(r"\s(?:>|\||&&|;|2>|#)\s?", cmd)[0]  # the command, not the shell's part or a comment
            found.append((path.relative_to(ROOT).as_posix(), cmd.strip()))
    return sorted(set(found))


COMMANDS = _commands()


def test_the_docs_hold_commands():
    assert len(COMMANDS) > 20 and any(path == "README.md" for path, _ in COMMANDS)


@pytest.mark.parametrize("path,command", COMMANDS, ids=[f"{p}:{c[:60]}" for p, c in COMMANDS])
def test_every_documented_command_parses(path, command):
    argv = shlex.split(command)[3:]  # after "python -m bench"
    if "..." in argv or any(a.startswith("[") for a in argv):
        argv = [a for a in argv if a != "..." and not a.startswith("[")]  # a synopsis, not a command
        if not argv or argv[0].startswith("-") and argv[0] != "--version":
            pytest.skip("a synopsis")
    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:
        assert exc.code == 0, f"{path}: `{command}` is refused by the parser"
