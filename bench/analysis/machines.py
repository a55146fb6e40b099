"""Where each run was measured: the machine (its CPU, and its GPU for a CUDA cell) and the
environment (the machine with its threads, the library versions, the platform, the harness's commit).

One sweep runs on one machine, but a folder continued with ``--resume`` in another session, or
gathered over sessions, can hold runs from several: a virtual machine's CPU changes between
sessions.  A time figure compares only with one measured on the same machine; F1 does not depend on
it (beyond the last digits of fp32 arithmetic).  So a report says which runs ran where
(``Environments``), and a ratio of two runs' times is taken only when ``same_machine`` holds.

A key a record lacks is unknown, not different: a CPU cell records no GPU (it runs on the same box
as the sweep's CUDA cells), and a record from before a key was recorded matches any value of it.
The node a cell ran on (``--executor ray``: its host's name) is a key too: two nodes of one cluster
are two machines, whatever CPU and GPU model they share, and a sequential record (no node) is unknown.
Only runs that measured something carry an environment: a cell skipped before its process started
has none (``measured`` is false), and counts on no machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from string import ascii_uppercase

from bench.records import Record

CPU = ("cpu_name", "cpu_family_model", "cpu_capability", "amx_bf16", "avx512_bf16")
GPU = ("gpu_name", "gpu_capability")  # not gpu_count: a single-process cell sees one GPU of a DDP box's N


def measured(record: Record) -> bool:
    """The record's process ran and said what it ran with (a skipped cell's record does not)."""
    return bool((record.env or {}).get("torch"))


def environment_rows(env: dict) -> list[tuple[str, str]]:
    """What a report says of one environment, row by row (label, text)."""
    return [("python", env.get("python")), ("torch", env.get("torch")), ("transformers", env.get("transformers")),
            ("accelerate", env.get("accelerate")), ("datasets", env.get("datasets")),
            ("lightning", env.get("lightning") or "not installed"),
            ("CPU", f"{env.get('cpu_name', '?')}, family/model {env.get('cpu_family_model', '?')} (torch capability "
                    f"{env.get('cpu_capability', '?')}, AMX-BF16 {'yes' if env.get('amx_bf16') else 'no'}, "
                    f"AVX512-BF16 {'yes' if env.get('avx512_bf16') else 'no'}, {env.get('torch_threads', '?')} threads)"),
            ("GPU", f"{env['gpu_name']} x{env.get('gpu_count')} (compute capability {env.get('gpu_capability')}, "
                    f"CUDA {env.get('cuda')})" if env.get("gpu_name") else "none used"),
            ("platform", env.get("platform")), ("git", env.get("git_sha"))]


@dataclass(frozen=True)
class Machine:
    cpu: tuple  # values of CPU (None: not recorded)
    gpu: tuple  # values of GPU (None: not recorded; a CPU cell records none)
    node: str | None = None  # the node it ran on (None: not recorded, as by the sequential executor)

    @classmethod
    def of(cls, record: Record) -> "Machine":
        return cls.of_env(record.env or {}, record.node or None)

    @classmethod
    def of_env(cls, env: dict, node: str | None = None) -> "Machine":
        return cls(cpu=tuple(env.get(k) for k in CPU), gpu=tuple(env.get(k) for k in GPU), node=node)

    def _keys(self) -> tuple:
        return self.cpu + self.gpu + (self.node,)

    def matches(self, other: "Machine") -> bool:
        """The same machine as far as both say: a key either lacks is unknown, not different."""
        return all(a is None or b is None or a == b for a, b in zip(self._keys(), other._keys()))


def same_machine(records: list[Record]) -> bool:
    """Every measured one of these runs was measured on one machine (as far as they say)."""
    machines = list(dict.fromkeys(Machine.of(r) for r in records if measured(r)))
    return all(a.matches(b) for i, a in enumerate(machines) for b in machines[i + 1:])


@dataclass(frozen=True)
class Environment:
    """The software and the CPU a run had; the GPU and the threads are left out of it: one sweep's
    CPU cells and CUDA cells, or its DDP cells (one thread per rank), share an environment."""
    key: tuple

    @classmethod
    def of(cls, record: Record) -> "Environment | None":
        if not measured(record):
            return None
        env = {k: v for k, v in record.env.items() if k not in ("torch_threads", "cuda", *GPU, "gpu_count",
                                                                "gpu_memory_mib")}
        return cls(key=tuple((label, text) for label, text in environment_rows(env) if label != "GPU"))


def _letter(i: int) -> str:
    return ascii_uppercase[i] if i < 26 else f"{ascii_uppercase[i // 26 - 1]}{ascii_uppercase[i % 26]}"


def _known(machine: Machine) -> int:
    return sum(v is not None for v in machine._keys())


def _merged(a: Machine, b: Machine) -> Machine:
    """What two matching machines say together: each key from whichever knows it."""
    pick = lambda x, y: tuple(u if u is not None else v for u, v in zip(x, y))
    return Machine(cpu=pick(a.cpu, b.cpu), gpu=pick(a.gpu, b.gpu), node=a.node if a.node is not None else b.node)


def cluster(machines: list[Machine]) -> list[Machine]:
    """The distinct machines among these, the best-known first: a run that says most (a CUDA cell,
    a new record) founds a machine, one that says less joins the first it matches and fills in
    nothing it contradicts."""
    out: list[Machine] = []
    for m in sorted(dict.fromkeys(machines), key=_known, reverse=True):
        i = next((i for i, known in enumerate(out) if known.matches(m)), None)
        if i is None:
            out.append(m)
        else:
            out[i] = _merged(out[i], m)
    return out


@dataclass
class Environments:
    """The environments of a report's runs, in the order first seen, each with a letter, and the
    machines they ran on."""
    seen: list  # Environment, first-seen order
    runs: dict  # Environment -> its records
    machines: list  # Machine, one per distinct machine (``cluster``)
    one_machine: bool  # same_machine over every measured run

    @classmethod
    def of(cls, records: list[Record]) -> "Environments":
        runs: dict = {}
        for r in records:
            env = Environment.of(r)
            if env is not None:
                runs.setdefault(env, []).append(r)
        measured_runs = [r for rs in runs.values() for r in rs]
        return cls(seen=list(runs), runs=runs, machines=cluster([Machine.of(r) for r in measured_runs]),
                   one_machine=same_machine(measured_runs))

    @property
    def mixed(self) -> bool:
        """Runs from more than one environment (CPU or software)."""
        return len(self.seen) > 1

    @property
    def mixed_machines(self) -> bool:
        return len(self.machines) > 1 or not self.one_machine

    @property
    def machine_total(self) -> int:
        return max(len(self.machines), 1 if self.one_machine else 2)

    def letter(self, env: Environment) -> str:
        return _letter(self.seen.index(env))

    def letter_of(self, record: Record) -> str | None:
        env = Environment.of(record)
        return self.letter(env) if env in self.runs else None

    def letters(self, records: list[Record]) -> list[str]:
        """The letters of the environments these records ran in, in order."""
        return sorted({self.letter_of(r) for r in records} - {None}, key=lambda s: (len(s), s))

    def env_of(self, env: Environment) -> dict:
        """What the report shows of one environment: its first run's record, the first with a GPU if
        any ran on one."""
        runs = self.runs[env]
        return next((r.env for r in runs if r.env.get("gpu_name")), runs[0].env)


def machine_count(records: list[Record]) -> int:
    """On how many machines these runs were measured (at least 2 when they are not on one)."""
    runs = [r for r in records if measured(r)]
    n = len(cluster([Machine.of(r) for r in runs]))
    return max(n, 1 if same_machine(runs) else 2) if runs else 0


def node_and_gpu(record: Record) -> tuple[str, str]:
    """Where a run's time figures belong: its node and its GPU model ('' where not recorded)."""
    return record.node or "", (record.env or {}).get("gpu_name") or ""


def node_groups(cells: list) -> list[tuple[str, list]]:
    """The cells' runs by node and GPU model, when they come from more than one node: per group its
    name and the cells narrowed to its runs (``CellStats.narrowed``), so that a median, a spread or a
    ratio is only ever taken within one group; one unnamed group of the cells as they are otherwise."""
    runs = [r for c in cells for r in c.records]
    if len({r.node for r in runs if r.node}) < 2:
        return [("", cells)]
    keys = sorted({node_and_gpu(r) for r in runs})
    out = []
    for key in keys:
        narrowed = [c.narrowed([r for r in c.records if node_and_gpu(r) == key]) for c in cells]
        narrowed = [c for c in narrowed if c.ok]
        if narrowed:
            node, gpu = key
            out.append((f"node {node or 'not recorded'}" + (f", {gpu}" if gpu else ""), narrowed))
    return out
