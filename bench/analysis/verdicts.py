"""What paired runs say of a ratio, in one word, and every sentence that word is said in.

The gap table, the bottom line, ``bench compare`` and ``bench explain`` all judge a ratio (B over A,
paired by repeat) by ``paired_kind`` against ``GAP_TOLERANCE``, and word it from ``WORDS``: one table,
one place to change what a verdict says.
"""

from __future__ import annotations

import enum

from bench.analysis.siblings import SIBLINGS

GAP_TOLERANCE = 0.05  # a ratio beyond 1 +- this, in every pair, is called real
PARITY_TOLERANCE = 1e-5  # largest step-wise relative loss difference called parity (--parity)


class Kind(str, enum.Enum):
    SAME = "same"  # the median within GAP_TOLERANCE of 1
    SINGLE = "single"  # one pair cannot say
    BUSY = "busy"  # the machine was busy while a run was measured
    SHARED = "shared"  # a run was measured beside sibling cells of its sweep sharing its cores or GPU
    REAL = "real"  # beyond the tolerance, on the same side, in every pair
    NOISE = "noise"  # beyond at the median, not in every pair
    NONE = "n/a"  # no ratio

    def __str__(self) -> str:
        return self.value


def paired_kind(ratio: float | None, pairs: list[float], busy: bool | str = False) -> Kind:
    """The kind of a ratio and its pairs (see ``Kind``); ``busy``: a run of either side was not measured
    alone (``siblings.SIBLINGS``: beside sibling cells; any other true value: on a busy machine)."""
    if ratio is None:
        return Kind.NONE
    if busy:  # a run measured while other processes took the cores: no claim, one run or many, same or not
        return Kind.SHARED if busy == SIBLINGS else Kind.BUSY
    if abs(ratio - 1) <= GAP_TOLERANCE:
        return Kind.SAME
    if len(pairs) < 2:
        return Kind.SINGLE
    beyond = all(p > 1 + GAP_TOLERANCE for p in pairs) or all(p < 1 - GAP_TOLERANCE for p in pairs)
    return Kind.REAL if beyond else Kind.NOISE


# Per kind, per place: {tol} the tolerance, {pct} the change, {dir} slower/faster (B in compare),
# {runs} the pairs, {lo}/{hi} the range of the paired ratios, {why}/{where} what the gap table adds.
WORDS: dict[Kind, dict[str, str]] = {
    Kind.SAME: {
        "finetune": "within {tol} of full fine-tuning",
        "bottom": "within {tol} of manual's speed",
        "gap": "within {tol} of manual",
        "compare": "same speed (within {tol})",
        "explain": "within {tol} of a step"},
    Kind.REAL: {
        "finetune": "{pct} {dir} in every one of {runs} paired runs",
        "bottom": "{pct} {dir} than manual in every run",
        "gap": "{pct} {dir} in every one of {runs} runs: a real gap{where}. Per-step work beyond the manual loop: {why}",
        "compare": "{pct} {dir} in B in every one of {runs} paired runs: real",
        "explain": "real: beyond {tol} in every one of {runs} runs"},
    Kind.NOISE: {
        "finetune": "{pct} {dir} at the median, not in every paired run: noise",
        "bottom": "{pct} {dir} at the median, not in every run: noise at this many repeats",
        "gap": ("{pct} {dir} at the median, but not beyond {tol} in every run (step ratio {lo:.2f}–{hi:.2f} across "
                "{runs} runs): not separable from this machine's run-to-run noise at {runs} repeats"),
        "compare": "{pct} {dir} in B at the median, not in every paired run ({lo:.2f}–{hi:.2f}): noise",
        "explain": "noise: not beyond the tolerance in every run"},
    Kind.SINGLE: {
        "finetune": "{pct} {dir} in one pair of runs: cannot be told from noise",
        "bottom": "{pct} {dir} in one run: cannot be told from noise",
        "gap": ("{pct} {dir} in a single run; one run cannot tell a gap from the machine's run-to-run noise: "
                "rerun with `--repeats 3` or more"),
        "compare": "{pct} {dir} in B in one pair of runs: cannot be told from noise (use --repeats 3 in both)",
        "explain": "one run: cannot be told from noise"},
    Kind.BUSY: {
        "finetune": "{pct} {dir}, measured on a busy machine: not called real",
        "bottom": "{pct} {dir}, measured on a busy machine",
        "gap": ("{pct} {dir} at the median, but not called real: the machine was busy while this loop or the manual "
                "loop was measured (⚠ busy in the table above); rerun on a quiet machine"),
        "compare": "{pct} {dir} in B, but a run was measured on a busy machine: not called real",
        "explain": "measured on a busy machine: not called real"},
    Kind.SHARED: {
        "finetune": "{pct} {dir}, measured beside other cells of its sweep: not called real",
        "bottom": "{pct} {dir}, measured beside other cells of its sweep",
        "gap": ("{pct} {dir} at the median, but not called real: this loop or the manual loop was measured beside "
                "other cells of its sweep that shared its cores or GPU (⚠ shared in the table above); rerun them "
                "one at a time (the sequential executor) for a clean comparison"),
        "compare": "{pct} {dir} in B, but a run was measured beside other cells of its sweep: not called real",
        "explain": "measured beside other cells of its sweep: not called real"},
    Kind.NONE: {
        "finetune": "no pair of runs on one machine",
        "bottom": "not comparable with manual (other batches)",
        "gap": "not comparable: no run saw the manual loop's batches in the same order",
        "compare": "no speed in one of them",
        "explain": "no paired runs"},
}


def say(kind: Kind, place: str, ratio: float | None = None, slower_above_1: bool = True, **facts) -> str:
    """The sentence for ``kind`` in ``place`` (bottom, gap, compare, explain, finetune).  ``ratio``'s distance from 1
    is the percentage; above 1 is slower (a step-time ratio) unless ``slower_above_1`` is False (a
    throughput ratio, where above 1 is faster)."""
    pct = f"{abs(ratio - 1):.0%}" if ratio else ""
    above = "slower" if slower_above_1 else "faster"
    below = "faster" if slower_above_1 else "slower"
    direction = above if ratio and ratio > 1 else below
    return WORDS[kind][place].format(tol=f"{GAP_TOLERANCE:.0%}", pct=pct, dir=direction, **facts)
