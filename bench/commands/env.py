"""``bench env``: the versions, CPU, cores, memory, GPUs and load a figure was measured with, to
paste beside it (``--json``: one object, for a machine to read)."""

from __future__ import annotations

from bench.cell.envinfo import describe, describe_json


def cmd_env(args) -> int:
    if getattr(args, "json", False):
        import json

        print(json.dumps(describe_json(), indent=2, sort_keys=True, default=str))
        return 0
    print("Copy and paste this into an issue or beside a figure you quote:\n")
    for key, value in describe():
        print(f"- {key}: {value}")
    return 0
