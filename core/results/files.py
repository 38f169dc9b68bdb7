"""The results file's neighbours on disk: private folders and files whatever the umask, and the one-writer
lock. Standard library only."""

from __future__ import annotations

import fcntl
import os
import socket
import stat
import time
import weakref
from dataclasses import dataclass
from pathlib import Path


class StoreError(RuntimeError):
    pass


def private_dir(folder: Path) -> None:
    """Make `folder` and each missing parent 0700, whatever the umask; folders already there stay as they are
    (they are the user's, not ours)."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:
            continue  # made meanwhile by someone else
        except OSError as exc:
            raise StoreError(f"{d}: cannot create folder ({exc.strerror})") from None
        os.chmod(d, 0o700)


def private_file(path: Path) -> None:
    """Create the results file 0600, or make an existing one (and its -wal, -shm) 0600: it is the user's alone.
    SQLite gives the -wal and -shm files it creates the results file's mode. A file that exists is never opened
    here: closing any descriptor of a file drops every POSIX lock this process holds on it, SQLite's included,
    so a connection this process has open on it (the window showing a run it then resumes) would lose its share
    of the WAL, and the next process to close the file would delete the WAL under the writer."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        if path.is_dir():
            raise StoreError(f"{path}: cannot create results file (Is a directory)") from None
    except OSError as exc:
        raise StoreError(f"{path}: cannot create results file ({exc.strerror})") from None
    else:  # new: no connection has it open yet
        try:
            _chmod_private(fd)
        finally:
            os.close(fd)
    for p in (str(path), f"{path}-wal", f"{path}-shm"):
        try:
            if stat.S_IMODE(os.stat(p).st_mode) != 0o600:
                os.chmod(p, 0o600)
        except FileNotFoundError:
            continue  # absent: SQLite makes it with the results file's mode
        except PermissionError:
            pass  # someone else's file we may write: theirs to make private
        except OSError as exc:
            raise StoreError(f"{p}: cannot make results file private ({exc.strerror})") from None


def _chmod_private(fd: int) -> None:
    if stat.S_IMODE(os.fstat(fd).st_mode) != 0o600:
        try:
            os.fchmod(fd, 0o600)
        except PermissionError:
            pass  # someone else's file we may write: theirs to make private


_HELD: set[str] = set()  # the lock files this process holds


class WriterLock:
    """One writer per results file: an advisory lock (flock) on `<file>.lock`, held while a run writes, with
    the holder's pid in it for whoever is refused. Readers never take it. The kernel drops it when the holder
    dies, even by kill -9, so a crash never locks a file for good; a release (or the lock's garbage
    collection, should an error skip it) removes the lock file."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.path = db.with_name(db.name + ".lock")
        self._unlock = weakref.finalize(self, _unlock, self.path, self._take())
        _HELD.add(os.path.abspath(self.path))

    def _take(self) -> int:
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                raise StoreError(f"{self.db}: cannot lock results file ({exc.strerror})") from None
            try:
                _flock_soon(fd)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                raise StoreError(f"{self.db}: in use by another gridwatch run ({holder}); wait for it to end or "
                                 f"stop it (reading it meanwhile is fine: gridwatch report {self.db})") from None
            except OSError as exc:
                os.close(fd)
                raise StoreError(f"{self.db}: cannot lock results file ({exc.strerror})") from None
            if self._is_ours(fd):
                break
            os.close(fd)  # its holder released and removed it meanwhile: take the one there now
        _chmod_private(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        return fd

    def _is_ours(self, fd: int) -> bool:
        try:
            there = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (there.st_dev, there.st_ino) == (mine.st_dev, mine.st_ino)

    @property
    def held(self) -> bool:
        return self._unlock.alive

    def release(self) -> None:
        self._unlock()


@dataclass(frozen=True)
class LockHolder:
    """Who holds a results file's writer lock: its pid (None if it has not written it yet) and host."""

    pid: int | None
    host: str = ""

    def __str__(self) -> str:
        if self.pid is None:
            return "pid unknown"
        return f"pid {self.pid}" + (f" on {self.host}" if self.host and self.host != socket.gethostname() else "")


def lock_holder(db: Path) -> LockHolder | None:
    """Who holds `db`'s writer lock now, or None when nobody does; it never waits. A holder that died (even by
    kill -9) holds nothing: the kernel dropped its lock, whatever its lock file still says."""
    path = db.with_name(db.name + ".lock")
    if os.path.abspath(path) in _HELD:  # ours: asking through the file could release it (flock emulated on NFS)
        return LockHolder(os.getpid(), socket.gethostname())
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)  # never creates it
    except OSError:
        return None  # no lock file: no writer (or one that cannot be read, so it cannot be asked)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # a moment's shared lock; a writer taking it retries
        except BlockingIOError:
            words = os.pread(fd, 200, 0).decode(errors="replace").split()
            pid = int(words[0]) if words and words[0].isdigit() else None
            return LockHolder(pid, words[1] if pid is not None and len(words) > 1 else "")
        except OSError:
            return None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


ASKED_FOR = 0.25  # seconds a writer keeps trying while someone only asks who holds the lock (lock_holder)


def _flock_soon(fd: int) -> None:
    """The writer's exclusive lock, tried again for a moment: lock_holder holds a shared lock for microseconds,
    and a run must not be refused for that. A real holder is still there afterwards: BlockingIOError."""
    deadline = time.monotonic() + ASKED_FOR
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def _unlock(path: Path, fd: int) -> None:
    _HELD.discard(os.path.abspath(path))
    try:
        os.unlink(path)  # still ours: only a holder removes it, and a taker checks that it locked what is there
    except OSError:
        pass
    os.close(fd)


def _holder(fd: int) -> str:
    """The holder of a held lock file, as "pid N" (and its host when not this one). The holder writes it just
    after taking the lock, so an empty file is read again for a moment."""
    deadline = time.monotonic() + 1.0
    while True:
        words = os.pread(fd, 200, 0).decode(errors="replace").split()
        if words or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    if not words or not words[0].isdigit():
        return "pid unknown"
    host = words[1] if len(words) > 1 else ""
    return f"pid {words[0]}" + (f" on {host}" if host and host != socket.gethostname() else "")
