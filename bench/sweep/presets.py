"""Presets: named combinations of the fast-path options, per device.

``fast`` is the fastest combination measured for each device class (see docs/cli.md, "Fast path"
section for the measurements behind the CPU entry).  A preset never changes the precision, which
is its own axis: ``--preset fast --precision bf16`` is the fast path in bf16.  Options given on the
command line win over the preset's.
"""

from __future__ import annotations

import dataclasses

from bench.config import RunConfig

PRESETS: dict[str, dict[str, dict]] = {
    "fast": {
        # Measured on a 2-core AVX2 CPU, MiniLM-L6 on MRPC, manual loop, fp32, 40 steps (samples/s):
        # tutorial 13.9 (26% of tokens are padding); length grouping 16.5 (1%); + batch 16 21.6;
        # + batch 32 23.1; + fused AdamW 25.6; foreach instead 23.7; eager attention instead 24.4.
        # Workers are left at 0: on 2 cores they compete with the math threads.
        "cpu": dict(group_by_length=True, batch_size=32, adamw="fused"),
        # GPUs: the usual practice, not yet measured by this project: shapes in multiples of 8 for
        # tensor cores, batches prepared by 2 workers into pinned memory, fused AdamW.
        "cuda": dict(group_by_length=True, pad_to_multiple_of=8, batch_size=32, adamw="fused",
                     num_workers=2, pin_memory=True),
        "mps": dict(group_by_length=True, batch_size=32),
    },
}


def apply_preset(run: RunConfig, device: str, name: str | None, explicit: set[str]) -> RunConfig:
    """The run config of one device under a preset; fields in ``explicit`` keep the user's value."""
    if not name:
        return run
    values = {k: v for k, v in PRESETS[name].get(device, {}).items() if k not in explicit}
    return dataclasses.replace(run, preset=name, **values)
