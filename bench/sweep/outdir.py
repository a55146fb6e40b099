"""The output folder of a sweep: one writer at a time, checked before any cell runs.

- **One writer.** A sweep holds an exclusive ``flock`` on ``OUT/.bench.lock`` for its whole life and
  writes its PID there; a second sweep on the same OUT is refused at once, naming that PID.  The
  kernel drops the lock when its process dies, however it dies, so a stale lock never blocks.
- **Preflight.** OUT is writable, its results file readable and whole, before anything trains.
- **Comparable.** A resumed sweep must plan what OUT recorded: same run configuration for every
  device / preset / batch size / seed it shares with OUT (only ``--repeats`` and ``--seeds`` may grow); an OUT that holds
  records is reused only with ``--resume``.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from pathlib import Path

from bench.config import Cell, ConfigError
from bench.records import RESULTS_FILE, Record, read_records
from bench.records.portable import portable_tree

LOCK_FILE = ".bench.lock"


class OutLock:
    """Held for the life of a sweep; released by ``release()`` or by the process's death."""

    def __init__(self, out: Path):
        self.path = out / LOCK_FILE
        self._fd = None

    def acquire(self) -> "OutLock":
        from bench.safeio import open_nofollow

        import stat

        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            mode = None
        if mode is not None and not stat.S_ISREG(mode) and not stat.S_ISLNK(mode):
            kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "not a regular file"
            raise ConfigError(f"{self.path}: {kind}, where bench keeps the folder's lock; move it aside, or give "
                              f"another --out")
        fd = open_nofollow(self.path, os.O_RDWR | os.O_CREAT)  # a link here would have its target emptied
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise ConfigError(f"{self.path.parent} is in use by another bench sweep (PID {holder}); "
                                  "wait for it, or give another --out") from None
            raise
        os.ftruncate(fd, 0)
        try:  # the PID only names the holder to a refused sweep; a full disk must not stop this one
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def check_writable(out: Path) -> None:
    """OUT exists (made if need be) and a file can be written in it: found now, not after training."""
    import tempfile

    from bench.safeio import refuse_link

    if out.is_symlink():
        refuse_link(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        # An unpredictable name, made with O_EXCL: nobody can plant a link where the probe writes.
        fd, probe = tempfile.mkstemp(prefix=".bench-write-test-", dir=out)
        try:
            os.write(fd, b"ok")
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        from bench.safeio import NO_SPACE, free_space

        if exc.errno in NO_SPACE:
            raise ConfigError(f"--out {out}: no space left on the device ({free_space(out)}); free some space "
                              "or give another --out") from None
        raise ConfigError(f"--out {out}: not writable ({exc.strerror or exc}); give a folder you can write to") from None
    check_no_links(out)
    results = out / RESULTS_FILE
    if results.exists() and not os.access(results, os.R_OK | os.W_OK):
        raise ConfigError(f"{results}: cannot be read and appended to; fix its permissions or give another --out")
    check_report_target(out / REPORT_FILE)


REPORT_FILE = "report.md"


def check_no_links(out: Path) -> None:
    """No symbolic link where bench writes: OUT itself, its files, its logs (refused before any cell runs)."""
    from bench.safeio import refuse_link

    for folder in (out, out / "logs"):
        if folder.is_symlink():
            refuse_link(folder)
        if folder.is_dir():
            for entry in sorted(folder.iterdir()):
                refuse_link(entry)


def check_report_target(report: Path) -> None:
    """``run`` and ``explain`` write OUT/report.md under ``report``'s rule: never over a file bench
    did not write (the user's notes), never through a link."""
    from bench.report import REPORT_TITLE
    from bench.safeio import refuse_link, written_by

    refuse_link(report)
    if report.exists() and (report.is_dir() or not written_by(report, REPORT_TITLE)):
        raise ConfigError(f"{report}: exists and was not written by bench; move it aside (the report is "
                          "written there) or give another --out")


def remove_if_untouched(out: Path) -> None:
    """Remove OUT when it holds nothing but what this run made before being refused (its lock)."""
    try:
        entries = list(out.iterdir())
        if all(e.name == LOCK_FILE and e.is_file() and not e.is_symlink() for e in entries):
            for e in entries:
                e.unlink()
            out.rmdir()
    except OSError:
        pass


def recorded(out: Path) -> list[Record]:
    """OUT's records, refusing a results file that is not whole (never glued onto, never rewritten)."""
    path = out / RESULTS_FILE
    if not path.exists():
        return []
    try:
        return read_records(path, allow_empty=True)
    except ConfigError as exc:
        raise ConfigError(f"{exc}. bench never edits recorded results: move {path} aside (or mend that line "
                          "yourself) and run again") from None


def _axes(run: dict, device: str, loop: str = "") -> tuple:
    """What varies inside one sweep's matrix besides loop / precision / repeat: the run config is
    per device, preset, batch size, seed and recipe (full or LoRA: each has its own learning rate
    and adapter settings), and per loop under ``--defaults native``, where each loop's run config has
    its own library's defaults on purpose."""
    return (device, run.get("preset"), run.get("batch_size"), run.get("seed"), run.get("finetune", "full"),
            run.get("defaults") == "native" and loop)


def _differing(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _differing(va, vb, f"{prefix}{key}.")
        elif json.dumps(va, sort_keys=True) != json.dumps(vb, sort_keys=True):
            out.append(f"{prefix}{key} ({vb!r} recorded, {va!r} now)")
    return out


def check_comparable(out: Path, cells: list[Cell], records: list, resume: bool) -> None:
    """Refuse to mix configurations in one OUT (see the module's docstring)."""
    if records and not resume:
        raise ConfigError(f"{out} already holds {len(records)} record(s); continue it with --resume {out}, "
                          "or give a new --out")
    by_axes: dict[tuple, dict] = {}
    for r in records:
        cfg = r.config or {}
        if "run" in cfg:
            by_axes.setdefault(_axes(cfg["run"], r.device, r.loop), cfg)
    for cell in cells:
        planned = cell.to_dict()
        old = by_axes.get(_axes(planned["run"], cell.device, cell.loop))
        if old is None:
            continue
        # Paths by their portable names: a committed folder's records name what was used, not where.
        diffs = _differing(portable_tree({"run": planned["run"], "nproc": cell.nproc, "nnodes": cell.nnodes}),
                           portable_tree({"run": old["run"], "nproc": old.get("nproc", 1), "nnodes": old.get("nnodes", 1)}))
        if diffs:
            raise ConfigError(f"--resume {out}: this sweep's cells differ from what {out} recorded for "
                              f"{cell.device}: {'; '.join(diffs)}. Resume with the same settings, or give a new --out")


def other_machines(out: Path, records: list[Record]) -> str | None:
    """A warning when OUT's runs were measured on another CPU than this one (a virtual machine's CPU
    changes between sessions): resuming mixes machines, which the report then shows run by run."""
    from bench.analysis.machines import Machine, measured
    from bench.precision import cpu_features

    here = cpu_features()  # read without torch: the keys torch would give stay unknown, so they match
    said = lambda env: (f"{env.get('cpu_name') or '?'} family/model {env.get('cpu_family_model') or '?'}, "
                        f"AVX512-BF16 {'yes' if env.get('avx512_bf16') else 'no'}, "
                        f"AMX-BF16 {'yes' if env.get('amx_bf16') else 'no'}")
    others = {said(r.env) for r in records if measured(r) and not Machine.of(r).matches(Machine.of_env(here))}
    if not others:
        return None
    return (f"--resume {out}: some of its runs were measured on another CPU ({'; '.join(sorted(others))}) than "
            f"this one ({said(here)}): the report will say which runs ran where, and compares their time "
            "figures only within one machine")
