"""Writing files so that a reader never sees a partial one, and locking a folder to one
writing run."""

import json
import os
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


class DamageWarning(UserWarning):
    """A damaged file found and computed again: the result is as if it had never been
    damaged. Its message is one line naming the file and what it cost."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Call `write(f)` on a temporary file beside `path`, then rename it to `path`.

    A process killed at any point leaves either the old file (or none) or the complete new
    one under `path`; at worst a hidden `.NAME.*.tmp` file that nothing reads.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide results from others
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


class FolderLock:
    """A lock file naming its owner (pid and host), so that a second run writing the same
    folder is refused at once, and a lock left by a killed run is taken over.

    A lock whose pid is not running on this host is stale (its run was killed). A lock of
    another host cannot be checked from here and is never taken over: the message says
    which file to delete if that run is gone. Used as a context manager.
    """

    def __init__(self, path: Path, what: str):
        self.path = Path(path)
        self.what = what  # the folder as the messages name it
        self.held = False

    def owner(self) -> dict | None:
        """The live owner of the lock (another run's), or `None` if it is free or stale."""
        try:
            owner = json.loads(self.path.read_text())
            pid, host = int(owner["pid"]), str(owner["host"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            return None  # a lock cut short by a kill while it was written: stale
        if host == socket.gethostname() and (pid == os.getpid() or not _alive(pid)):
            return None
        return {"pid": pid, "host": host}

    def refusal(self, owner: dict) -> str:
        return (
            f"{self.what} is being written by another run (pid {owner['pid']} on "
            f"{owner['host']}); wait for it to finish, or if that run is gone, delete "
            f"{self.path}."
        )

    def acquire(self) -> "FolderLock":
        me = json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode()
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                owner = self.owner()
                if owner is not None:
                    raise FileExistsError(self.refusal(owner)) from None
                # Stale: take it over. Renaming it away (atomic: one run wins) and creating
                # again, never overwriting, keeps two runs that find the same stale lock
                # from both believing they hold it.
                stale = self.path.with_name(f"{self.path.name}.stale-{os.getpid()}")
                try:
                    os.rename(self.path, stale)
                except FileNotFoundError:
                    continue
                stale.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "wb") as f:
                f.write(me)
            self.held = True
            return self
        raise FileExistsError(f"{self.what}: could not take the lock {self.path}; try again.")

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
