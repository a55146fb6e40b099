"""Where each run was measured: the machine (its CPU, and its GPU for a CUDA cell) and the
environment (the machine with its threads, the library versions, the platform, the harness's commit).

One sweep runs on one machine, but a folder continued with ``--resume`` in another session, or
gathered over sessions, can hold runs from several: a virtual machine's CPU changes between
sessions.  A time figure compares only with one measured on the same machine; F1 does not depend on
it (beyond the last digits of fp32 arithmetic).  So a report says which runs ran where
(``Environments``), and a ratio of two runs' times is taken only when ``same_machine`` holds.

A key a record lacks is unknown, not different: a CPU cell records no GPU (it runs on the same box
as the sweep's CUDA cells), and a record from before a key was recorded matches any value of it.
Only runs that measured something carry an environment: a cell skipped before its process started
has none (``measured`` is false), and counts on no machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from string import ascii_uppercase

from bench.records import Record

CPU = ("cpu_name", "cpu_family_model", "cpu_capability", "amx_bf16", "avx512_bf16")
GPU = ("gpu_name", "gpu_count", "gpu_capability")


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

    @classmethod
    def of(cls, record: Record) -> "Machine":
        env = record.env or {}
        return cls(cpu=tuple(env.get(k) for k in CPU), gpu=tuple(env.get(k) for k in GPU))

    def matches(self, other: "Machine") -> bool:
        """The same machine as far as both say: a key either lacks is unknown, not different."""
        return all(a is None or b is None or a == b for a, b in zip(self.cpu + self.gpu, other.cpu + other.gpu))


def same_machine(records: list[Record]) -> bool:
    """Every measured one of these runs was measured on one machine (as far as they say)."""
    machines = list(dict.fromkeys(Machine.of(r) for r in records if measured(r)))
    return all(a.matches(b) for i, a in enumerate(machines) for b in machines[i + 1:])


@dataclass(frozen=True)
class Environment:
    rows: tuple  # environment_rows, as the report shows them

    @classmethod
    def of(cls, record: Record) -> "Environment | None":
        return cls(rows=tuple(environment_rows(record.env))) if measured(record) else None


def _letter(i: int) -> str:
    return ascii_uppercase[i] if i < 26 else f"{ascii_uppercase[i // 26 - 1]}{ascii_uppercase[i % 26]}"


@dataclass
class Environments:
    """The environments of a report's runs, in the order first seen, each with a letter, and the
    machines they ran on (one environment's runs share one machine)."""
    seen: list  # Environment, first-seen order
    runs: dict  # Environment -> its records
    machines: list  # Machine, one per distinct machine, first-seen order

    @classmethod
    def of(cls, records: list[Record]) -> "Environments":
        runs: dict = {}
        machines: list = []
        for r in records:
            env = Environment.of(r)
            if env is None:
                continue
            runs.setdefault(env, []).append(r)
            if not any(m.matches(Machine.of(r)) for m in machines):
                machines.append(Machine.of(r))
        return cls(seen=list(runs), runs=runs, machines=machines)

    @property
    def mixed(self) -> bool:
        """Runs from more than one environment (machine, threads or software)."""
        return len(self.seen) > 1

    @property
    def mixed_machines(self) -> bool:
        return len(self.machines) > 1

    def letter(self, env: Environment) -> str:
        return _letter(self.seen.index(env))

    def letter_of(self, record: Record) -> str | None:
        env = Environment.of(record)
        return self.letter(env) if env in self.runs else None

    def letters(self, records: list[Record]) -> list[str]:
        """The letters of the environments these records ran in, in order."""
        return sorted({self.letter_of(r) for r in records} - {None}, key=lambda s: (len(s), s))

    def machine_count(self, records: list[Record]) -> int:
        """On how many of the report's machines these runs were measured."""
        return len({next(i for i, m in enumerate(self.machines) if m.matches(Machine.of(r)))
                    for r in records if measured(r)})
