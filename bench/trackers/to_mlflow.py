"""MLflow: one experiment per sweep (named after OUT), one run per record, through ``MlflowClient``.

Where: ``$MLFLOW_TRACKING_URI`` when the user set it (a server, a Databricks workspace, another
store), else a SQLite store in OUT (``OUT/mlflow.db``, MLflow's own default backend since its file
store went into maintenance mode) with the artifacts in ``OUT/mlartifacts``: no server, nothing
outside OUT.  Read it with ``mlflow ui --backend-store-uri sqlite:///OUT/mlflow.db`` or
``MlflowClient("sqlite:///OUT/mlflow.db")``.  The check before a sweep asks the store for the
experiment with no HTTP retries, so an unreachable server is one line at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path

from bench.trackers.content import Session, TrackedRun

BATCH = 100  # MLflow's limit of params (and of tags) per log_batch; metrics go 1000 at a time


@contextlib.contextmanager
def _quiet(fail_fast: bool = False):
    """MLflow's and alembic's INFO lines off the sweep's terminal; with ``fail_fast``, no HTTP
    retries (unless the user set their own), so an unreachable server answers at once."""
    loggers = [logging.getLogger(n) for n in ("mlflow", "alembic")]
    levels = [lg.level for lg in loggers]
    env = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"} if fail_fast else {}
    set_here = [k for k in env if k not in os.environ]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    os.environ.update({k: env[k] for k in set_here})
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
        for k in set_here:
            os.environ.pop(k, None)


def connect(out: Path, experiment: str) -> Session:
    with _quiet():
        from mlflow.tracking import MlflowClient

    uri = os.environ.get("MLFLOW_TRACKING_URI")
    artifacts = None
    if not uri:
        uri = f"sqlite:///{(out / 'mlflow.db').resolve()}"
        artifacts = (out / "mlartifacts").resolve().as_uri()
    with _quiet(fail_fast=True):
        client = MlflowClient(tracking_uri=uri)
        found = client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else client.create_experiment(experiment, artifact_location=artifacts)
    return Session(name="mlflow", out=out, experiment=experiment, where=f"{uri} (experiment {experiment!r})",
                   handle=(client, experiment_id))


def log_run(session: Session, run: TrackedRun) -> str:
    from mlflow.entities import Metric, Param, RunTag

    client, experiment_id = session.handle
    stamp = int(time.time() * 1000)
    with _quiet():
        made = client.create_run(experiment_id, run_name=run.name, tags=run.tags)
        run_id = made.info.run_id
        try:
            params = [Param(k, v) for k, v in run.params.items()]
            metrics = [Metric(k, v, stamp, run.last_step) for k, v in run.metrics.items()]
            metrics += [Metric(k, v, stamp, step) for k, points in run.series.items() for step, v in points]
            for i in range(0, len(params), BATCH):
                client.log_batch(run_id, params=params[i:i + BATCH])
            for i in range(0, len(metrics), 1000):
                client.log_batch(run_id, metrics=metrics[i:i + 1000])
            client.log_batch(run_id, tags=[RunTag("bench.key", run.key)])
            for name, text in run.files.items():
                client.log_text(run_id, text, name)
            for path in run.paths:
                client.log_artifact(run_id, str(path))
        except BaseException:
            client.set_terminated(run_id, "FAILED")
            raise
        client.set_terminated(run_id, "FAILED" if run.failed else "FINISHED")
    return run_id
