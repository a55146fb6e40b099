"""Records: one JSON line per cell in OUT/results.jsonl, appended and flushed as each cell ends.

``schema``: the ``Record`` dataclass (units in the field names); ``groups``: its nested groups; ``io``: the
append that is whole or nothing and the reading that returns ``Record`` objects or refuses the file.
"""

from bench.records.io import REQUIRED_FIELDS, RESULTS_FILE, append_record, latest_per_cell, read_records
from bench.records.groups import (GROUPS, Baseline, EvalPoint, Failure, MachineLoad, Model, Predictions, ResultsFileError,
                                  Setup)
from bench.records.schema import SCHEMA, Record, finite_or_null

__all__ = ["GROUPS", "REQUIRED_FIELDS", "RESULTS_FILE", "SCHEMA", "Baseline", "EvalPoint", "Failure", "MachineLoad", "Model",
           "Predictions", "Record", "ResultsFileError", "Setup", "append_record", "finite_or_null", "latest_per_cell",
           "read_records"]
