"""A distributed cell's per-rank fields, merged into the record's one value each.

Every rank sends rank 0 what it measured (``per_rank`` in the record); each record field that is
measured per rank declares how the ranks' values make the record's, in a table ``MERGE = {field:
how}`` beside the code that measures it (the meter's observers, ``bench/meter/``; the cell's MFU
peak, ``bench/cell/record.py``).  ``how`` is a reducer of the ranks' values of that field (``max``,
``min``, ``sum``), or a rule over the whole rank dicts (``Rate``, ``Over``) for a field made from
other per-rank values.
"""

from __future__ import annotations


class Rate:
    """A global rate: every rank's ``count`` over the slowest rank's ``seconds`` (the ranks step
    together, so the slowest one's time is the cell's)."""

    def __init__(self, count: str, seconds: str = "timed_s"):
        self.count, self.seconds = count, seconds

    def __call__(self, ranks: list[dict]) -> float:
        return sum(r[self.count] for r in ranks) / max(r[self.seconds] for r in ranks)


class Over:
    """``how`` of the ranks' values of another per-rank key (the field's name in the record differs)."""

    def __init__(self, key: str, how):
        self.key, self.how = key, how

    def __call__(self, ranks: list[dict]):
        return self.how([r[self.key] for r in ranks])


def merge(ranks: list[dict], *tables: dict) -> dict:
    """The record's fields from the ranks' values, by each field's rule.  A field none of the ranks
    measured (device memory on a CPU: None) is left out, as a one-process cell leaves it."""
    out = {}
    for table in tables:
        for field, how in table.items():
            if isinstance(how, (Rate, Over)):
                out[field] = how(ranks)
                continue
            values = [r.get(field) for r in ranks]
            if any(v is None for v in values):
                continue
            out[field] = how(values)
    return out
