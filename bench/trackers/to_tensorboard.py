"""TensorBoard: event files under ``OUT/tensorboard/`` (through torch's ``SummaryWriter``), one
folder per record, so ``tensorboard --logdir OUT/tensorboard`` shows the sweep as one experiment
with a run per cell.

Per run: the same scalars as every tracker (``train/*`` and ``eval/*`` against the step,
``summary/*`` at the last step), the parameters in the HParams dashboard (with the main summary
figures as its metrics) and as a Markdown table (``params``), and ``record.json`` (and the cell's
log) written beside the event file: TensorBoard has no artifacts.  The report is a run of its own,
``report``, whose text is the report's Markdown.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from bench.report.format import head
from bench.trackers.content import Session, TrackedRun

FOLDER = "tensorboard"
HPARAM_METRICS = ("summary/samples_per_s", "summary/step_s_p50", "summary/eval_f1", "summary/train_loss_final")


def connect(out: Path, experiment: str) -> Session:
    from torch.utils.tensorboard import SummaryWriter  # noqa: F401  (needs the tensorboard package)

    root = out / FOLDER
    root.mkdir(parents=True, exist_ok=True)
    return Session(name="tensorboard", out=out, experiment=experiment, where=str(root), handle=root)


def run_folder(root: Path, name: str) -> Path:
    """A new folder for the run: its name made safe for a path, numbered if it exists."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "run"
    folder, n = root / base, 1
    while folder.exists() or folder.is_symlink():
        n += 1
        folder = root / f"{base}-{n}"
    return folder


def _params_table(params: dict) -> str:
    from bench.report import markdown as md

    return "\n".join(head("| parameter | value |") + [f"| {md.text(k)} | {md.text(v)} |" for k, v in params.items()])


def log_run(session: Session, run: TrackedRun) -> str:
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

    folder = run_folder(session.handle, run.name)
    writer = SummaryWriter(log_dir=str(folder))
    try:
        for name, points in run.series.items():
            for step, value in points:
                writer.add_scalar(name, value, step)
        for name, value in run.metrics.items():
            writer.add_scalar(name, value, run.last_step)
        if run.params:
            shown = {k: v for k, v in run.metrics.items() if k in HPARAM_METRICS}
            for summary in hparams(dict(run.params, **{"bench.key": run.key}), shown):
                writer.file_writer.add_summary(summary)
            writer.add_text("params", _params_table(run.params), run.last_step)
        if "report.md" in run.files:
            writer.add_text("report", run.files["report.md"], 0)
    finally:
        writer.close()
    for name, text in run.files.items():
        (folder / name).write_text(text, encoding="utf-8")
    for path in run.paths:
        shutil.copyfile(path, folder / path.name)
    return str(folder)
