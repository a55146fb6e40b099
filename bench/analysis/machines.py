"""Where each run was measured: the machine (the CPU or GPU and its threads) and the software (the
library versions, the platform, the harness's commit).

One sweep runs on one machine, but a folder continued with ``--resume`` in another session, or
gathered over sessions, can hold runs from several: a virtual machine's CPU changes between
sessions.  A time figure compares only with one measured on the same machine; F1 does not depend on
it (beyond the last digits of fp32 arithmetic).  So a report says which runs ran where, and compares
speed only within one machine.

Only runs that measured something carry an environment: a cell skipped before its process started,
or a record from before the environment was recorded, has none (``Environment.of`` -> None).
"""

from __future__ import annotations

from dataclasses import dataclass
from string import ascii_uppercase

from bench.records import Record

# What decides a time figure: the hardware and the threads it ran on.
HARDWARE = ("cpu_name", "cpu_family_model", "cpu_capability", "amx_bf16", "avx512_bf16", "torch_threads",
            "gpu_name", "gpu_count", "gpu_capability")
# What else may move it: the software, the platform, the harness's own commit.
SOFTWARE = ("python", "torch", "transformers", "accelerate", "datasets", "lightning", "cuda", "platform", "git_sha")


@dataclass(frozen=True)
class Environment:
    hardware: tuple  # (key, value) pairs of HARDWARE
    software: tuple  # (key, value) pairs of SOFTWARE

    @classmethod
    def of(cls, record: Record) -> "Environment | None":
        env = record.env or {}
        if not env.get("torch"):
            return None  # nothing measured in this record (skipped before its process started)
        return cls(hardware=tuple((k, env.get(k)) for k in HARDWARE),
                   software=tuple((k, env.get(k)) for k in SOFTWARE))


@dataclass
class Environments:
    """The environments of a report's runs, in the order first seen, each with a letter."""
    seen: list  # Environment, first-seen order
    runs: dict  # Environment -> its records

    @classmethod
    def of(cls, records: list[Record]) -> "Environments":
        runs: dict = {}
        for r in records:
            env = Environment.of(r)
            if env is not None:
                runs.setdefault(env, []).append(r)
        return cls(seen=list(runs), runs=runs)

    @property
    def machines(self) -> list:
        """The distinct machines (hardware), first-seen order."""
        return list(dict.fromkeys(env.hardware for env in self.seen))

    @property
    def mixed(self) -> bool:
        """Runs from more than one environment (machine or software)."""
        return len(self.seen) > 1

    @property
    def mixed_machines(self) -> bool:
        return len(self.machines) > 1

    def letter(self, env: Environment) -> str:
        i = self.seen.index(env)
        return ascii_uppercase[i] if i < len(ascii_uppercase) else f"E{i + 1}"

    def letter_of(self, record: Record) -> str | None:
        env = Environment.of(record)
        return self.letter(env) if env in self.runs else None

    def letters(self, records: list[Record]) -> list[str]:
        """The letters of the environments these records ran in, sorted."""
        return sorted({self.letter_of(r) for r in records} - {None})

    def machine_count(self, records: list[Record]) -> int:
        return len({env.hardware for env in map(Environment.of, records) if env is not None})


def differing_keys(envs: list[Environment]) -> set[str]:
    """The keys whose value is not the same in every environment."""
    out = set()
    for part in ("hardware", "software"):
        rows = [dict(getattr(env, part)) for env in envs]
        out |= {k for k in rows[0] if any(row.get(k) != rows[0].get(k) for row in rows)} if rows else set()
    return out
