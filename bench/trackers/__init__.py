"""Experiment trackers: ``--report-to mlflow,tensorboard,wandb,trackio`` (the Trainer's names).

After each cell's record is appended to results.jsonl -- between cells, never inside one's timed
steps -- the record is logged as one run to each tracker named; a sweep is one experiment (group,
project) named after OUT's folder; the report is logged once rendered.  What a run holds is the same
for every tracker (``content.py``); each tracker is one small module (``to_<name>.py``: ``connect``
and ``log_run``), listed once in ``TRACKERS`` with the package it needs, an optional extra of the
same name (``pip install -e ".[mlflow]"``).  The defaults need no server and stay in OUT: MLflow's
SQLite store, TensorBoard's event files, W&B offline, Trackio's local store.

A tracker that cannot work (its package missing, its server unreachable) is one line before any
cell runs.  One that fails later never fails a cell nor touches a record (records are never
rewritten): the failure is a warning on the cell's line and an entry in ``OUT/trackers.jsonl``, the
tracker log, which says for every record and tracker whether it was logged, where, and why not.
Nothing is lost: a record not logged is logged by the next ``bench report OUT --report-to NAME``.
This module imports no tracker library.
"""

from __future__ import annotations

import argparse
import importlib.util

# name -> (module, the package it imports; the extra that installs it has the tracker's name)
TRACKERS = {
    "mlflow": ("bench.trackers.to_mlflow", "mlflow"),
    "tensorboard": ("bench.trackers.to_tensorboard", "tensorboard"),
    "wandb": ("bench.trackers.to_wandb", "wandb"),
    "trackio": ("bench.trackers.to_trackio", "trackio"),
}
REPORT_TO_HELP = (f"log each cell's record as one run, once it is written, to these experiment trackers: none, all "
                  f"(every one installed here), or a comma list of {', '.join(TRACKERS)} (each an optional extra; "
                  "offline by default, in OUT; a sweep is one experiment named after OUT)")


def installed(name: str) -> bool:
    return importlib.util.find_spec(TRACKERS[name][1]) is not None


def tracker_list(text: str) -> list[str]:
    """``--report-to``: ``none``, ``all`` (every tracker whose package is installed, as the Trainer's
    ``all``), or a comma list of names."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if items in (["none"], []):
        return []
    if items == ["all"]:
        return [name for name in TRACKERS if installed(name)]
    bad = [t for t in items if t not in TRACKERS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown tracker {', '.join(map(repr, bad))}; choose from: none, all, "
                                         f"{', '.join(TRACKERS)}")
    return list(dict.fromkeys(items))


def missing(names: list[str]) -> str | None:
    """A line for the first tracker named whose package is not installed, or None."""
    for name in names:
        if not installed(name):
            return (f"--report-to {name}: needs the package {TRACKERS[name][1]!r}, not installed here "
                    f"(pip install -e \".[{name}]\")")
    return None
