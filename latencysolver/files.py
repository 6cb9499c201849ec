"""Writing to disk: one line naming the path and the operating system's reason when it fails, nothing half-written.

Every path latencysolver writes (an export folder, a report, a predictions file, the cache, the artifact folder,
a SQLite file's folder) goes through these:

* ``check_writable(path, what)`` runs before any work: a path under a file, or in a read-only folder, is refused
  at once (not after a 20-minute teacher fine-tune), and the check creates nothing.
* ``writing(path, what)`` wraps a block that writes at or under ``path``: an OS error there (or one a library
  wrapped: safetensors' "(os error 28)") becomes one ``OutputError`` naming the path.  ``torch.save`` loses the
  errno on a full disk ("unexpected pos 576 vs 534"): save into a buffer and write its bytes instead.
* ``atomic_file(path, what)`` hands out a temporary file beside ``path`` and renames it into place only when the
  block ends cleanly; a full disk, an error or Ctrl-C removes it, so a reader never sees a truncated file.  A
  ``path`` that is a device or a FIFO (``/dev/stdout``) is written in place.
* ``remove_stale_staging(folder, prefix)`` deletes the temporary folders a killed process left behind; call it
  only where no live process can be writing them (under the lock that guards them).
* ``publish_folder(path, write)`` builds a cache entry (the teacher, the elastic student) in a staging folder and
  renames it into place, so an interrupted build leaves no half-written entry.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from latencysolver.errors import OutputError, first_line


def not_a_file(path: str | Path) -> str | None:
    """What ``path`` is when it is there but not a regular file ("a folder", "a FIFO (named pipe)", "a character
    device", ...), so a message can say so instead of "not found"; None for a regular file or nothing there."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):  # not there (or a name the OS refuses): the caller's "not found"
        return None
    kinds = (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((name for test, name in kinds if test(mode)), None)


def os_reason(exc: BaseException) -> str | None:
    """The operating system's reason for a failed write, or None when ``exc`` is not an I/O failure."""
    if isinstance(exc, OSError):
        return exc.strerror or first_line(exc)
    text = str(exc)
    code = re.search(r"os error (\d+)", text)  # safetensors (Rust): "I/O error: No space left on device (os error 28)"
    return os.strerror(int(code.group(1))) if code else None


def _nearest_existing(path: Path) -> Path:
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def _access_reason(folder: Path) -> str:
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return os.strerror(errno.EROFS)
    except OSError:
        pass
    return os.strerror(errno.EACCES)


def check_writable(path: str | Path, what: str, *, folder: bool) -> Path:
    """Refuse, before any work, a ``path`` that cannot be written: a folder to use or create (``folder``), or a
    file to create or replace.  ``what`` names it in the message (``--out``, ``cache folder``).  Creates nothing."""
    path = Path(path).expanduser()
    shown = f"{what} {str(path)!r}"
    if folder and path.exists() and not path.is_dir():
        raise OutputError(f"{shown}: is a file, not a folder")
    if not folder and path.is_dir():
        raise OutputError(f"{shown}: is a folder; name a file")
    base = _nearest_existing(path if folder else path.parent)
    if not base.is_dir():
        raise OutputError(f"{shown}: {str(base)!r} is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise OutputError(f"{shown}: cannot write in {str(base)!r}: {_access_reason(base)}")
    return path


@contextmanager
def writing(path: str | Path, what: str) -> Iterator[None]:
    """Turn an I/O failure inside the block into one ``OutputError``: "<what> '<path>': <OS reason>"."""
    try:
        yield
    except OutputError:
        raise
    except Exception as exc:
        reason = os_reason(exc)
        if reason is None:
            raise
        culprit = getattr(exc, "filename", None)
        where = f" ({culprit})" if culprit and str(culprit) != str(path) else ""
        raise OutputError(f"{what} {str(path)!r}: cannot write{where}: {reason}") from None


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_file(path: str | Path, what: str, named: str | Path | None = None) -> Iterator[Path]:
    """A temporary file beside ``path`` for the block to write; renamed onto ``path`` when the block ends cleanly,
    removed otherwise (Ctrl-C included).  I/O failures become an ``OutputError`` naming ``named`` (or ``path``)."""
    path = Path(path)
    if path.exists() and not path.is_file() and not path.is_dir():  # /dev/stdout, a FIFO: written in place; a
        with writing(path if named is None else named, what):  # rename would replace the device node itself
            yield path
        return
    with writing(path if named is None else named, what):
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
        try:
            yield tmp
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; the result is an ordinary file
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def remove_stale_staging(folder: Path, prefix: str) -> list[Path]:
    """Delete ``folder/<prefix>*`` entries (temporary folders and files a killed process left); returns them."""
    if not folder.is_dir():
        return []
    stale = sorted(folder.glob(f"{glob_escape(prefix)}*"))
    for entry in stale:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    return stale


def glob_escape(text: str) -> str:
    """``text`` with glob's special characters escaped (``glob.escape`` for a name, not a path)."""
    return re.sub(r"([*?\[])", r"[\1]", text)


def publish_folder(path: Path, write: Callable[[Path], None], what: str = "cache folder") -> None:
    """Build a folder in a temporary sibling with ``write(staging)``, then rename it to ``path``.

    Any failure (Ctrl-C included) removes the staging folder, so ``path`` is either absent or complete; an entry
    already at ``path`` (one a crash left without its marker file) is replaced.  Callers hold the entry's lock."""
    with writing(path.parent, what):
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        with writing(path.parent, what):
            write(staging)
            if path.exists():
                shutil.rmtree(path)
            staging.rename(path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
