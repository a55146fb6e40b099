"""Trackio: its local store, by default in ``OUT/trackio/`` (``$TRACKIO_DIR`` wins, as Trackio's
own variable): one project per sweep (named after OUT), one run per record.  ``trackio show
--project NAME`` (with ``TRACKIO_DIR=OUT/trackio``) opens its dashboard.

Trackio reads ``$TRACKIO_DIR`` once, when it is first imported: a process that imported it already
logs where it logs, and the tracker log says where that was.  ``$TRACKIO_SPACE_ID`` and
``$TRACKIO_SERVER_URL``, Trackio's own switches to a Space or a server, are left as the user set
them.  Per run: the parameters as its config, the series step by step, the summary figures logged at
the last step, the record (and the cell's log) as artifacts; no CPU or GPU monitor threads.  Trackio
prints its own progress lines: kept off the sweep's terminal.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path

from bench.trackers.content import Session, TrackedRun


def connect(out: Path, experiment: str) -> Session:
    os.environ.setdefault("TRACKIO_DIR", str((out / "trackio").resolve()))
    import trackio.utils
    from trackio.sqlite_storage import SQLiteStorage

    SQLiteStorage.validate_project_name(experiment)
    return Session(name="trackio", out=out, experiment=experiment,
                   where=f"{trackio.utils.TRACKIO_DIR} (project {experiment!r})", handle=None)


def log_run(session: Session, run: TrackedRun) -> str:
    import trackio

    with contextlib.redirect_stdout(io.StringIO()):
        made = trackio.init(project=session.experiment, name=run.name, config=dict(run.params, **{"bench.key": run.key}),
                            auto_log_cpu=False, auto_log_gpu=False, embed=False)
        try:
            steps: dict[int, dict] = {}
            for name, points in run.series.items():
                for step, value in points:
                    steps.setdefault(step, {})[name] = value
            if run.metrics:
                steps.setdefault(run.last_step, {}).update(run.metrics)
            for step in sorted(steps):
                made.log(steps[step], step=step)
            if "report.md" in run.files:
                made.log({"report": trackio.Markdown(run.files["report.md"])}, step=0)
            with tempfile.TemporaryDirectory() as tmp:
                for name, text in run.files.items():
                    path = Path(tmp) / name
                    path.write_text(text, encoding="utf-8")
                    made.log_artifact(path, name=f"{run.kind}-{_safe(run.key)}-{_safe(name)}", type=f"bench-{run.kind}")
                for path in run.paths:
                    made.log_artifact(path, name=f"{run.kind}-{_safe(run.key)}-{_safe(path.name)}", type=f"bench-{run.kind}")
        finally:
            trackio.finish()
    return made.name


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text)
