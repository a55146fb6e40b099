"""A run's options as one file: ``run --config FILE`` (TOML or JSON) and ``run --print-config``.

The file's keys are the flags of ``run`` without their dashes (``max-grad-norm = 1.0``; ``_`` for
``-`` is accepted too), so a published recipe reads like its command line, or the HF Trainer's
``TrainingArguments`` names (``learning_rate``; a whole ``TrainingArguments.to_json_string()``
file: ``bench/config/trainingargs.py`` says which of its keys are honoured, which refused unless at bench's
value, which ignored).  Each value is turned
back into the flag's own text and parsed by the flag's own type, so a file is checked exactly as
the command line is, and flags given on the command line win (they come after the file's).
``--print-config`` writes the options as resolved, in that format; read back with ``--config``
it gives the same run.  Nothing here imports torch.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.config import ConfigError

NOT_IN_A_FILE = {"help", "config", "print-config"}


def run_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``run`` subcommand's parser inside the main one."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["run"]


def actions(run: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Each option a file may set, by its key: the long flag without its dashes."""
    out = {}
    for action in run._actions:
        longs = [o for o in action.option_strings if o.startswith("--")]
        if longs and longs[0][2:] not in NOT_IN_A_FILE:
            out[longs[0][2:]] = action
    return out


def _load(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--config {path}: cannot read it ({exc.__class__.__name__}: {exc})") from None
    if path.suffix.lower() not in (".json", ".toml"):
        raise ConfigError(f"--config {path}: a {path.suffix or 'suffix-less'} file; the formats read are TOML (.toml) "
                          f"and JSON (.json)")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        elif path.suffix.lower() == ".toml":
            try:
                import tomllib
            except ImportError:  # Python 3.10
                try:
                    import tomli as tomllib
                except ImportError:
                    raise ConfigError(f"--config {path}: reading TOML needs Python >= 3.11 or the package tomli; "
                                      "or write the file as JSON") from None
            data = tomllib.loads(text)
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:  # json.JSONDecodeError and tomllib.TOMLDecodeError are ValueErrors
        raise ConfigError(f"--config {path}: not valid {path.suffix[1:].upper()}: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a table of options at the top, got {type(data).__name__}")
    return data


def _tokens(key: str, value, action: argparse.Action, path: Path) -> list[str]:
    """The command-line tokens for one key of the file, checked by the flag's own type."""
    flag = action.option_strings[-1] if action.nargs == 0 else next(o for o in action.option_strings if o.startswith("--"))
    if action.nargs == 0:  # store_true / store_false: true gives the flag, false leaves its default
        if not isinstance(value, bool):
            raise ConfigError(f"--config {path}: {key} takes true or false, got {value!r}")
        return [flag] if value else []
    if isinstance(value, bool) or value is None or isinstance(value, dict):
        raise ConfigError(f"--config {path}: {key} takes {action.metavar or action.dest.upper()}, got {value!r}")
    text = ",".join(str(v) for v in value) if isinstance(value, list) else str(value)
    try:
        parsed = action.type(text) if action.type else text
    except (argparse.ArgumentTypeError, ValueError) as exc:
        raise ConfigError(f"--config {path}: {key} = {value!r}: {exc}") from None
    if action.choices is not None and parsed not in action.choices:
        raise ConfigError(f"--config {path}: {key} = {value!r}: choose from {', '.join(map(str, action.choices))}")
    # One token, ``--flag=value``: a value that starts with a dash (``model = "--lr"``) stays a value
    # instead of reading as the next flag.
    return [f"{flag}={text}"]


def _file_options(path: str, run: argparse.ArgumentParser) -> list[list[str]]:
    """The file's options, each as its command-line tokens (a flag and, unless a switch, its value):
    the flags' keys, and the Trainer's names for them (``bench/config/trainingargs.py``)."""
    from bench.config.trainingargs import UNSET, translate

    p = Path(path)
    known = actions(run)
    data = _load(p)  # its refusals name the file already
    try:
        entries = translate(data, set(known))
    except KeyError as exc:
        raise ConfigError(f"--config {p}: unknown key {exc.args[0]!r}; the keys are run's flags without dashes "
                          f"({', '.join(sorted(known))}) or TrainingArguments' names for them") from None
    except ConfigError as exc:
        raise ConfigError(f"--config {p}: {exc}") from None
    sources: dict[str, list[str]] = {}
    for raw, key, _ in entries:
        sources.setdefault(key, []).append(raw)
    twice = next(((key, raws) for key, raws in sources.items() if len(raws) > 1), None)
    if twice:
        raise ConfigError(f"--config {p}: sets {twice[0]} twice ({' and '.join(twice[1])}); keep one")
    out = []
    for raw, key, value in entries:
        tokens = [] if value is UNSET else _tokens(raw, value, known[key], p)
        if tokens:
            out.append(tokens)
    return out


def file_argv(path: str, run: argparse.ArgumentParser) -> list[str]:
    """The file's options as command-line tokens (to go before the command line's own)."""
    return [t for option in _file_options(path, run) for t in option]


def _rivals(run: argparse.ArgumentParser) -> dict[str, set[str]]:
    """For each option in a mutually exclusive group (``--seed`` / ``--seeds``), its rivals' flags."""
    out: dict[str, set[str]] = {}
    for group in run._mutually_exclusive_groups:
        flags = {o for a in group._group_actions for o in a.option_strings}
        for a in group._group_actions:
            for o in a.option_strings:
                out[o] = flags - set(a.option_strings)
    return out


def with_config(argv: list[str], path: str, run: argparse.ArgumentParser) -> list[str]:
    """``argv`` with the file's tokens right after the ``run`` subcommand, so that flags win; a file's
    option whose rival the command line gives (the file's ``seed``, the command line's ``--seeds``)
    gives way to it."""
    at = argv.index("run") + 1
    given = {t.split("=", 1)[0] for t in argv[at:] if t.startswith("--")}
    rivals = _rivals(run)
    mine = [t for option in _file_options(path, run)
            if not rivals.get(option[0].split("=", 1)[0], set()) & given for t in option]
    return argv[:at] + mine + argv[at:]


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    # A TOML basic string: JSON's escapes are TOML's, and characters past the BMP stay themselves
    # (JSON's ASCII escapes would write them as surrogate pairs, which TOML refuses).
    return json.dumps(str(value), ensure_ascii=False)


def to_toml(args: argparse.Namespace, run: argparse.ArgumentParser) -> str:
    """The resolved options as a file ``--config`` reads back to the same run."""
    from bench.data import resolve_glue_dir

    lines = ["# bench run --config FILE: the options of one run (flags given on the command line win)"]
    rivals = _rivals(run)
    for key, action in actions(run).items():
        value = getattr(args, action.dest)
        beaten = [r for r in rivals.get(f"--{key}", ()) if getattr(args, actions(run)[r[2:]].dest) is not None
                  and getattr(args, actions(run)[r[2:]].dest) != actions(run)[r[2:]].default]
        if beaten:  # --seeds given: --seed's default is not part of the run
            lines.append(f"# {key}: not set ({', '.join(beaten)} given)")
            continue
        if key == "glue-dir":
            value = resolve_glue_dir(value)
        if action.nargs == 0:  # a switch: on when it holds the value its flag stores
            lines.append(f"# {key}: not set (the preset decides; off without one)" if value is None else
                         f"{key} = {_toml_value(value == action.const)}")
            continue
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], bool):  # a choice list
            value = value[0] if value[1] else "all"
        if value is None:
            lines.append(f"# {key}: not set (its default)")
            continue
        lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"
