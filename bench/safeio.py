"""Writing in OUT without losing or corrupting anything, and without following links.

- ``append_line``: a results line is written whole or not at all: one ``write`` of the whole line,
  its length checked, fsync'd; on any error the file is truncated back to its old size.
- ``write_atomic``: a report, a plot, a CSV is written to a temporary file beside it and renamed
  into place, so a full disk or a kill mid-write leaves the old file (or none), never half of one.
- ``open_nofollow``: the lock, the logs and the results file are opened with ``O_NOFOLLOW``; a
  symbolic link at a name bench writes is refused (a shared OUT, a sweep run as root).
- ``DiskFull``: an ENOSPC / EDQUOT said in one line, naming the folder and its free space.
- ``safe_name``: a piece of a file name built from record fields, in a safe character set.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from pathlib import Path

from bench.config import ConfigError

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class DiskFull(ConfigError):
    """No space left where bench was writing; the message names the folder and its free space
    (``what``: the same without the advice, for a caller that gives its own)."""

    def __init__(self, what: str, advice: str = "free some space and run again"):
        super().__init__(f"{what}; {advice}")
        self.what = what


class LinkRefused(ConfigError):
    """A symbolic link stands where bench writes a file."""


def says_disk_full(text: str) -> bool:
    """Does an error's text (a failed cell's reason) say the disk was full: one of ``NO_SPACE``'s
    errors, as Python writes them ("[Errno 28] No space left on device", a quota's 122)?"""
    return any(f"[Errno {n}]" in text or os.strerror(n) in text for n in NO_SPACE)


def free_space(folder: Path) -> str:
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return "unknown free space"
    if free < 2**20:
        return f"{free / 2**10:.0f} KiB free"
    return f"{free / 2**20:.1f} MiB free" if free < 2**30 else f"{free / 2**30:.1f} GiB free"


def disk_full(path: Path, exc: OSError, what: str = "") -> DiskFull:
    folder = Path(path).parent
    return DiskFull(f"{folder}: no space left on the device while writing {Path(path).name}"
                    f"{' (' + what + ')' if what else ''} ({free_space(folder)})")


@contextlib.contextmanager
def full_disk_said(path: Path):
    """An ENOSPC / EDQUOT raised inside, once the caller's own clean-up has run, as one ``DiskFull``
    line naming ``path``'s folder and its free space; any other error as it is."""
    try:
        yield
    except OSError as exc:
        if exc.errno in NO_SPACE:
            raise disk_full(path, exc) from None
        raise


def refuse_link(path: Path) -> None:
    if os.path.islink(path):
        raise LinkRefused(f"{path} is a symbolic link (to {os.readlink(path)}); bench writes no file through a "
                          "link: remove it, or give another --out")


def open_nofollow(path: Path, flags: int, mode: int = 0o644) -> int:
    """``os.open`` that refuses a symbolic link at ``path`` in one line (ELOOP from ``O_NOFOLLOW``)."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP or os.path.islink(path):
            refuse_link(path)
        raise


def append_line(path: Path, line: str) -> None:
    """Append ``line`` (ending in a newline) to ``path`` whole, or leave the file as it was."""
    path = Path(path)
    data = line.encode("utf-8")
    fd = open_nofollow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        size = os.fstat(fd).st_size
        with full_disk_said(path):
            try:
                written = os.write(fd, data)
                if written != len(data):
                    raise OSError(errno.ENOSPC, f"short write ({written} of {len(data)} bytes)")
                os.fsync(fd)
            except BaseException:
                try:
                    os.ftruncate(fd, size)
                    os.fsync(fd)
                except OSError:
                    pass
                raise
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes | str | None = None, writer=None) -> None:
    """Write ``path`` through a temporary file beside it, renamed into place.  ``writer(tmp_path)``
    writes the temporary file itself (``savefig``, the CSV writer) when ``data`` is not given."""
    path = Path(path)
    refuse_link(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with full_disk_said(path):
        try:
            if writer is None:
                raw = data.encode("utf-8") if isinstance(data, str) else data
                with os.fdopen(fd, "wb") as f:
                    f.write(raw)
                    f.flush()
                    os.fsync(f.fileno())
            else:
                os.close(fd)
                writer(tmp)
                with open(tmp, "rb") as f:
                    os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise


_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def safe_name(text: str) -> str:
    """``text`` reduced to letters, digits and ``._+-`` (no separator, no leading dot): a piece of a
    file name that cannot leave its folder."""
    return re.sub(r"\.{2,}", ".", _UNSAFE.sub("-", str(text))).strip(".-") or "x"


def inside(folder: Path, path: Path) -> Path:
    """``path``, checked to lie inside ``folder`` (a name built from record fields)."""
    if Path(os.path.abspath(path)).parent != Path(os.path.abspath(folder)):
        raise ConfigError(f"{path}: a file name built from the records would leave {folder}; refused")
    return path


def written_by(path: Path, title: str) -> bool:
    """The file starts as bench writes it (its title): bench never writes over a file it did not write."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.readline().startswith(title)
    except (OSError, UnicodeDecodeError):
        return False
