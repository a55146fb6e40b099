"""The loops, one file each, one shape for all (see ``bench/loop_api.py``):

    train(cell, data, model, meter) -> bench.loop_api.LoopResult

The registry below is the one place that names them: a loop is its file plus one line here, with
the package its file needs beyond the core dependencies (None: none).  Nothing is imported until a
cell of that loop runs, so ``python -m bench --help`` imports no torch.
"""

LOOPS = {
    "manual": ("loops.manual_loop", None),
    "accelerate": ("loops.accelerate_loop", None),
    "trainer": ("loops.trainer_loop", None),
    "fabric": ("loops.fabric_loop", "lightning"),
    "lightning": ("loops.lightning_loop", "lightning"),
}


# The loop every other is compared with: the tutorial's own, hand-written (the registry's first).
REFERENCE_LOOP = "manual"


def available() -> list[str]:
    """The registered loops whose extra package is installed, in registry order."""
    import importlib.util

    return [name for name, (_, needs) in LOOPS.items() if needs is None or importlib.util.find_spec(needs)]


def missing_package(name: str) -> str | None:
    """The package a registered loop needs and this environment lacks, or None."""
    return None if name in available() else LOOPS[name][1]


def resolve(name: str):
    """The loop's ``train`` function (imports its module)."""
    import importlib

    return importlib.import_module(LOOPS[name][0]).train
