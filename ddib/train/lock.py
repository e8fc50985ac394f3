"""One trainer per run directory: an exclusive OS lock on `<run>/train.lock`, held for the whole run.

The lock is the kernel's (flock on POSIX, msvcrt.locking on Windows), not the file's existence, so a trainer
that was killed (even with SIGKILL) leaves no stale lock: the kernel drops it with the process. The file keeps
the holder's pid, for the message a second trainer prints.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import DDIBError

LOCK_FILE = "train.lock"

try:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

except ImportError:  # pragma: no cover - Windows
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


class RunLock:
    """`with RunLock(run_dir):` — raises DDIBError naming the holder's pid when another process holds it."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise DDIBError(f"cannot create the lock file {self.path}: {exc.strerror or exc}") from None
        if not _try_lock(fd):
            holder = _read_pid(fd)
            os.close(fd)
            raise DDIBError(
                f"{self.run_dir} is in use by another ddib train (pid {holder}); wait for it to finish, stop it, "
                "or train into another --models-dir"
            )
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.fsync(fd)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            try:
                _unlock(self.fd)
            finally:
                os.close(self.fd)
                self.fd = None


def _read_pid(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 32).decode(errors="replace").strip()
    except OSError:
        text = ""
    return text or "unknown"
