"""Crash-safe files: every file cnnrun writes goes through :func:`atomic_write`.

The content goes to a temporary file in the same folder (``.<name>.<pid>.<token>.tmp``: hidden, and never matching
the name or the extension of a real file, so no reader takes it for one), is flushed and synced to the disk, and then
renamed over the target in one step (``os.replace``). A process killed at any instant (SIGKILL, out of memory, power
loss after the sync) leaves either the previous complete file or the new complete file, never a truncated one; at
worst a stray temporary file. A failed write (a full disk, a read-only folder) removes its temporary file, leaves the
previous file as it was and raises :class:`WriteError`, which names the file. Light module (standard library only).
"""
from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path
from typing import BinaryIO, Callable

TEMP_SUFFIX = ".tmp"
# What an unwritable folder or a full disk raises: the errors that say "cannot write here", not "no such input".
UNWRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR)


class WriteError(OSError):
    """A file could not be written (full disk, read-only folder, ...); the message names the file."""

    def __init__(self, path: str | os.PathLike, cause: OSError):
        super().__init__(cause.errno, cause.strerror or str(cause))
        self.filename = str(path)

    def __str__(self) -> str:
        return f"cannot write {self.filename}: {self.strerror}"


def temporary_path(path: Path) -> Path:
    """A fresh temporary name beside ``path``, unique per process and call (concurrent writers never share one)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


def is_temporary(path: Path) -> bool:
    """Whether ``path`` is a temporary file of :func:`atomic_write` (left behind when its writer was killed)."""
    return path.name.startswith(".") and path.name.endswith(TEMP_SUFFIX)


def writer_pid(path: Path) -> int | None:
    """The process id in the name of a temporary file of :func:`atomic_write`; None for any other file."""
    if not is_temporary(path):
        return None
    parts = path.name[: -len(TEMP_SUFFIX)].rsplit(".", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def _running(pid: int) -> bool:
    if os.name != "posix":  # elsewhere os.kill(pid, 0) would end the process, not ask about it
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except OSError:  # it exists but belongs to someone else, or the platform cannot tell: leave its files alone
        return True
    return True


def remove_stray_temporaries(folder: str | os.PathLike) -> tuple[int, int]:
    """Remove the temporary files below ``folder`` whose writer no longer runs (a process killed while writing);
    how many were removed, and their bytes. A folder that a run takes over again (a resume) calls this first, so
    that killed attempts do not pile up partial checkpoints. Files of a writer still running on this machine stay."""
    removed = freed = 0
    for path in Path(folder).rglob(f".*{TEMP_SUFFIX}"):
        pid = writer_pid(path)
        if pid is None or pid == os.getpid() or _running(pid):
            continue
        try:
            size = path.stat().st_size
            path.unlink()
        except OSError:
            continue
        removed, freed = removed + 1, freed + size
    return removed, freed


def _open_new(path: Path):
    # O_EXCL: never write into a file that someone else created; 0o666 minus the umask, as open() would
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb")


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (a no-op where folders cannot be opened, as on Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Replace ``path`` with what ``write(file)`` writes into a binary file, in one step (see the module's doc).

    Raises :class:`WriteError` naming ``path`` when the file cannot be written; the previous file stays intact.
    """
    path = Path(path)
    tmp = temporary_path(path)
    try:
        with _open_new(tmp) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())  # the content is on the disk before the name points to it
        os.replace(tmp, path)
    except BaseException as err:
        try:
            tmp.unlink()
        except OSError:
            pass
        if isinstance(err, OSError) and not isinstance(err, WriteError):
            raise WriteError(path, err) from err
        raise
    _sync_folder(path.parent)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8), atomically."""
    data = text.encode("utf-8")
    atomic_write(path, lambda f: f.write(data))


def check_writable(folder: str | os.PathLike) -> None:
    """Create (and remove) a temporary file in ``folder``, as :func:`atomic_write` would; raises :class:`WriteError`
    naming the folder when that fails (read-only, not a folder, full disk)."""
    folder = Path(folder)
    tmp = temporary_path(folder / "probe")
    try:
        _open_new(tmp).close()
        tmp.unlink()
    except OSError as err:
        raise WriteError(folder, err) from err


def unwritable_cause(err: BaseException) -> WriteError | None:
    """The error behind ``err`` (itself or what it was raised from) that says a file or folder cannot be written
    (see ``UNWRITABLE``), as a :class:`WriteError` naming it; else None. Tells an unwritable output folder (Hydra's,
    or run()'s) from other failures."""
    seen: BaseException | None = err
    for _ in range(10):  # a short chain: __cause__ / __context__ of wrapped errors (logging's ValueError, ...)
        if seen is None:
            return None
        if isinstance(seen, WriteError):
            return seen
        if isinstance(seen, OSError) and seen.errno in UNWRITABLE and seen.filename is not None:
            return WriteError(seen.filename, seen)
        seen = seen.__cause__ or seen.__context__
    return None
