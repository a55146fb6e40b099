"""``bench report OUT``: the Markdown (and optionally the CSV) of a results folder."""

from __future__ import annotations

import sys
from pathlib import Path

from bench.config import ConfigError


from bench.safeio import written_by  # noqa: F401  (named here too: the report's rule)


def cmd_report(args) -> int:
    source = Path(args.results)
    results = source / "results.jsonl" if source.is_dir() else source
    out_md = Path(args.output) if args.output else results.parent / "report.md"
    try:
        return _report(args, source, results, out_md)
    except OSError as exc:  # a read-only folder, a name too long: one line, nothing half-written
        raise ConfigError(f"{exc.filename or out_md}: cannot be written ({exc.strerror or exc}); "
                          "give -o a path in a folder you can write to") from None


def _check_targets(args, results: Path, out_md: Path, csv_path: Path | None) -> None:
    """The report never writes over records, nor over any file it did not write itself, nor through a link."""
    from bench.report import REPORT_TITLE
    from bench.report.cells_csv import FIRST_COLUMN
    from bench.safeio import refuse_link

    flag = "-o " if args.output else ""
    _refuse_collisions(results, out_md, csv_path)
    refuse_link(out_md)
    if out_md.exists() and out_md.resolve() == results.resolve():
        raise ConfigError(f"-o {out_md}: that is the results file being reported on; give a .md path")
    if out_md.is_dir():
        raise ConfigError(f"-o {out_md}: is a folder; give a .md file path")
    if out_md.exists() and not written_by(out_md, REPORT_TITLE):
        raise ConfigError(f"{flag}{out_md}: exists and was not written by bench report; "
                          + ("give a new path" if flag else "move it aside, or give -o PATH"))
    if out_md.suffix.lower() != ".md":
        raise ConfigError(f"-o {out_md}: the report is Markdown; give a path ending in .md")
    if csv_path is not None and csv_path.exists() and (csv_path.resolve() == results.resolve() or
                                                       not written_by(csv_path, FIRST_COLUMN)):
        raise ConfigError(f"--csv {csv_path}: exists and was not written by bench report; give a new path")


def _refuse_collisions(results: Path, out_md: Path, csv_path: Path | None) -> None:
    """No output lands on another output or on a file of the results folder that is not the report's
    (the records, the lock, the logs, the tracker log): ``--csv OUT/report.md`` would replace the
    report with a CSV, after which neither ``run --resume`` nor ``report`` would take the folder."""
    from bench.sweep.outdir import LOCK_FILE
    from bench.sweep.celllog import LOG_DIR

    if csv_path is not None and csv_path.resolve() == out_md.resolve():
        raise ConfigError(f"--csv {csv_path}: the same file as the report ({out_md}); give the CSV its own path")
    out = results.parent
    reserved = {(out / name).resolve(): what for name, what in (
        (results.name, "the results file (the records)"), (LOCK_FILE, "the folder's lock"), (LOG_DIR, "the cells' logs"),
        ("trackers.jsonl", "the tracker log"), ("report.md", "the folder's report"))}
    for flag, path in (("--csv", csv_path), ("-o", out_md)):
        if path is None:
            continue
        what = reserved.get(path.resolve())
        if what and not (flag == "-o" and what == "the folder's report"):
            raise ConfigError(f"{flag} {path}: that is {what} in {out}; give another path")


def _report(args, source: Path, results: Path, out_md: Path) -> int:
    from bench.records import read_records
    from bench.report import render
    from bench.report.cells_csv import write_csv

    csv_path = Path(args.csv) if getattr(args, "csv", None) else None
    _check_targets(args, results, out_md, csv_path)
    records = read_records(source)
    if getattr(args, "report_to", None):
        return _report_and_log(args.report_to, records, results.parent, out_md, csv_path)
    render(records, out_md)
    print(f"report: {out_md}", file=sys.stderr)
    if csv_path is not None:
        write_csv(records, csv_path)
        print(f"csv: {csv_path}", file=sys.stderr)
    return 0


def _report_and_log(names: list[str], records: list, out: Path, out_md: Path, csv_path: Path | None) -> int:
    """The report, then every record of OUT no tracker named has logged yet and the report, to
    each: under OUT's lock (a sweep logging into the same stores waits for nobody: refused).  Exit 1
    when something could not be logged (the report is written; the tracker log says what)."""
    from bench.sweep.outdir import OutLock
    from bench.report import render
    from bench.report.cells_csv import write_csv
    from bench.trackers.drive import log_pending, log_report, open_trackers, say

    lock = OutLock(out).acquire()
    try:
        trackers = open_trackers(names, out)  # one line and exit 2 before anything is written
        render(records, out_md)
        print(f"report: {out_md}", file=sys.stderr)
        if csv_path is not None:
            write_csv(records, csv_path)
            print(f"csv: {csv_path}", file=sys.stderr)
        warnings = log_pending(trackers) + log_report(trackers, out_md)
        say(warnings)
        return 1 if warnings else 0
    finally:
        lock.release()
