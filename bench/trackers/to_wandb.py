"""Weights & Biases: offline by default, into ``OUT/wandb/`` (no account, no network): one run per
record, in the project ``$WANDB_PROJECT`` (else ``bench``) and the group named after OUT, so the
sweep is one group.  ``wandb sync OUT/wandb/offline-run-*`` uploads them later.

``$WANDB_MODE`` decides as W&B's own variable does (``online`` logs to the server the user is
logged in to; ``disabled`` logs nothing); unset, it is ``offline``.  Per run: the parameters as the
run's config, the series with ``run.log`` step by step, the summary figures in ``run.summary``, and
``record.json`` (and the cell's log) in the run's files folder, which ``wandb sync`` uploads with it.
No console capture, no system-metrics thread: nothing of W&B runs while a cell does.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from bench.trackers.content import Session, TrackedRun


def _mode() -> str:
    return os.environ.get("WANDB_MODE") or "offline"


def connect(out: Path, experiment: str) -> Session:
    import wandb

    if _mode() in ("online", "run"):  # a server is asked for: the user must be logged in, said now
        if not wandb.login(anonymous="never", verify=True, timeout=10):
            raise RuntimeError("WANDB_MODE=online but not logged in to W&B (wandb login)")
    out.mkdir(parents=True, exist_ok=True)
    project = os.environ.get("WANDB_PROJECT") or "bench"
    return Session(name="wandb", out=out, experiment=experiment,
                   where=f"{_mode()}: {out / 'wandb'} (project {project!r}, group {experiment!r})", handle=project)


def log_run(session: Session, run: TrackedRun) -> str:
    import wandb

    settings = wandb.Settings(console="off", x_disable_stats=True, silent=True, save_code=False)
    made = wandb.init(mode=_mode(), dir=str(session.out), project=session.handle, group=session.experiment,
                      name=run.name, job_type=run.kind, config=dict(run.params, **{"bench.key": run.key}),
                      tags=[v for k, v in run.tags.items() if k in ("bench.kind", "bench.status")],
                      reinit="create_new", settings=settings)
    try:
        steps: dict[int, dict] = {}
        for name, points in run.series.items():
            for step, value in points:
                steps.setdefault(step, {})[name] = value
        for step in sorted(steps):  # W&B's steps only go up: every series of one step in one call
            made.log(steps[step], step=step)
        made.summary.update(dict(run.metrics, **{k: v for k, v in run.tags.items()}))
        folder = Path(made.dir)
        for name, text in run.files.items():
            (folder / name).write_text(text, encoding="utf-8")
        for path in run.paths:
            shutil.copyfile(path, folder / path.name)
    except BaseException:
        made.finish(exit_code=1)
        raise
    made.finish(exit_code=1 if run.failed else 0)
    return f"{made.id} ({made.dir})"
