"""A stand-in for ``bench.cell.main`` in the isolation tests: the cell's seed says how it misbehaves.

    seed 1: raises      seed 2: exits 3 without a record      seed 3: hangs      seed 4: SIGKILLs itself
    seed 5: under torchrun, rank 1 raises while rank 0 runs the real cell (and would wait for rank 1)
    seed 6: says what torchrun says of a worker SIGKILLed (by the kernel's OOM killer) and exits 1
    otherwise: behaves like bench.cell.main
"""

import os
import signal
import sys
import time

from bench.cell.main import main as real_main
from bench.config import Cell


def main(argv):
    import json

    from bench.cell.dist import die_with_parent

    die_with_parent()  # as bench.cell.main does first thing
    with open(argv[0]) as f:
        cell = Cell.from_dict(json.load(f))
    seed = cell.run.seed
    print(f"misbehaving cell, seed {seed}", flush=True)
    if seed == 1:
        raise RuntimeError("boom: the loop raised")
    if seed == 2:
        print("giving up", flush=True)
        sys.exit(3)
    if seed == 3:
        time.sleep(600)
    if seed == 4:
        os.kill(os.getpid(), signal.SIGKILL)
    if seed == 6:
        print("torch.distributed.elastic.multiprocessing.errors.ChildFailedError: "
              "Signal 9 (SIGKILL) received by PID 12345", flush=True)
        sys.exit(1)
    if seed == 5 and os.environ.get("RANK") == "1":
        import bench.cell.main

        def gives_up(name):  # the loop of rank 1 raises, inside the real cell
            def train(*args):
                raise RuntimeError("rank 1 gives up")
            return train

        bench.cell.main.resolve_loop = gives_up
    return real_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
