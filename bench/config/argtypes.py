"""Argument types of the command line: each parses one option's text or says, in one line, why
not.  Nothing here imports torch."""

from __future__ import annotations

import argparse
import math


def choice_list(valid: tuple[str, ...], what: str):
    """A comma list of choices or ``all``; remembers whether ``all`` was used."""

    def parse(text: str) -> tuple[list[str], bool]:
        if text == "all":
            return list(valid), False
        items = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in items if t not in valid]
        if bad or not items:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {', '.join(map(repr, bad)) or repr(text)}; choose from: all, {', '.join(valid)}")
        return list(dict.fromkeys(items)), True

    return parse


def device_list(valid: tuple[str, ...]):
    """``auto`` (one device: the first of cuda, mps, cpu this machine has, picked when the plan is
    made: ``bench.devices.auto_device``), ``all``, or a comma list of devices."""
    choices = choice_list(valid, "device")

    def parse(text: str) -> tuple[list[str], bool]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        if items == ["auto"]:
            return ["auto"], True
        if "auto" in items:
            raise argparse.ArgumentTypeError(f"auto picks one device and stands alone, got {text!r}")
        try:
            return choices(text)
        except argparse.ArgumentTypeError:
            bad = ", ".join(repr(t) for t in items if t not in valid) or repr(text)
            raise argparse.ArgumentTypeError(f"unknown device {bad}; choose from: auto, all, {', '.join(valid)}") from None

    return parse


def int_at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def int_in(lo: int, hi: int):
    at_least = int_at_least(lo)

    def parse(text: str) -> int:
        value = at_least(text)
        if value > hi:
            raise argparse.ArgumentTypeError(f"must be <= {hi}, got {value}")
        return value

    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def positive_int_list(text: str) -> list[int]:
    values = [positive_int(t) for t in text.split(",") if t.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}")
    return list(dict.fromkeys(values))


def seed_list(text: str) -> list[int]:
    """A comma list of seeds (each in numpy's and torch's range), repeats dropped, order kept."""
    seed = int_in(0, 2**32 - 1)
    values = [seed(t.strip()) for t in text.split(",") if t.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"expected seeds separated by commas, got {text!r}")
    return list(dict.fromkeys(values))


def fraction(text: str) -> float:
    value = positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value}")
    return value


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_float(text: str) -> float:
    value = finite_float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def dropout_rate(text: str) -> float:
    value = non_negative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value


def module_names(text: str) -> list[str]:
    """A comma list of module names (``query,value``), as PEFT's ``target_modules`` matches them."""
    import re

    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", t)]
    if bad or not items:
        raise argparse.ArgumentTypeError(f"expected module names separated by commas (e.g. query,value), got {text!r}")
    return list(dict.fromkeys(items))
