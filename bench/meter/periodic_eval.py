"""Evaluation during training, for time-to-accuracy: given an ``evaluator`` and ``eval_every`` K, the
meter evaluates after every K-th step.  That time is cut out of the step times (the next step's
clock starts after it, so throughput is training only) but stays in the wall clock, which is what
time-to-accuracy is measured on."""

from __future__ import annotations

import time


class PeriodicEvaluation:
    def __init__(self, dev, evaluator=None, eval_every: int | None = None, target_f1: float | None = None):
        self._dev = dev
        self.evaluator, self.eval_every, self.target_f1 = evaluator, eval_every, target_f1
        self.curve: list[dict] = []  # step, wall_s since start (evaluations included), scores
        self.total_s = 0.0

    def due(self, done: int) -> bool:
        return self.evaluator is not None and bool(self.eval_every) and done % self.eval_every == 0

    def run(self, done: int, t_start: float) -> None:
        """Evaluate now, after step ``done``, the device idle before and after."""
        self._dev.synchronize()
        t0 = time.perf_counter()
        scores = self.evaluator()
        self._dev.synchronize()
        t1 = time.perf_counter()
        self.total_s += t1 - t0
        if scores is not None:  # rank 0
            self.curve.append({"step": done, "wall_s": t1 - t_start,
                               "eval_f1": scores["eval_f1"], "eval_accuracy": scores["eval_accuracy"]})

    def fields(self, steps: list[float], warmup: int) -> dict:
        hit = next((e for e in self.curve if self.target_f1 is not None and e["eval_f1"] >= self.target_f1), None)
        return {"eval_curve": self.curve, "eval_during_training_s": self.total_s,
                "time_to_target_s": hit["wall_s"] if hit else None,
                "time_to_target_step": hit["step"] if hit else None}
