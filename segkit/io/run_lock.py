"""A lock file that says a job is running in a folder, for jobs on several machines sharing a file system.

``acquire_lock(path)`` creates ``path`` with ``O_CREAT | O_EXCL`` (atomic on a local file system and on NFS
v3 and later: of several processes creating it at once exactly one succeeds) and writes who holds it::

    {"state": "running", "host": "node07", "pid": 4242, "pid_start": 8812345,
     "started": "2026-12-06T07:30:12Z", "command": "segkit cv configs/la.yaml --fold 2"}

While the lock is held, a daemon thread touches the file every ``HEARTBEAT_S`` seconds (its modification
time is the heartbeat). A lock is *stale* when

- its host is this machine and its process no longer runs, or the pid now belongs to another process
  (``pid_start``, the start time from ``/proc/<pid>/stat``, differs: a recycled pid), or
- its heartbeat is older than ``STALE_AFTER_S`` (a job killed on another machine: SIGKILL at a SLURM time
  limit, a node that went down). The clocks of the machines and the file server must agree to within a
  few minutes.

``acquire_lock`` removes a stale lock and takes the folder, after telling ``notice`` one line; a live lock
raises ``LockBusy``, unless ``break_lock=True`` (``--break-lock``: the user knows the job is gone).
Removal renames the lock to a unique name and checks that the renamed file is the one judged stale, so two
processes finding the same stale lock cannot both take the folder (one that renamed a fresh lock puts it
back). ``RunLock.release`` deletes the file only while it still holds this process's own record.

Example:
    >>> with acquire_lock(Path("runs/la-cv/fold_2.lock")):
    ...     train()                                           # LockBusy if another live job holds it
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType

from segkit.io.atomic import pid_alive

HOST = socket.gethostname()
HEARTBEAT_S = 30.0
STALE_AFTER_S = 600.0
"""A lock whose file has not been touched for this long is stale, whatever its host (20 missed beats)."""


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


@dataclass(frozen=True)
class LockHolder:
    """Who holds a lock: the file's JSON, and ``age_s``, the seconds since its last heartbeat (not stored)."""

    host: str
    pid: int
    started: str
    command: str = ""
    pid_start: int | None = None
    state: str = "running"
    age_s: float = field(default=0.0, compare=False)

    def describe(self) -> str:
        """``host node07, pid 4242, since 2026-12-06T07:30:12Z``."""
        return f"host {self.host}, pid {self.pid}, since {self.started}"

    def stale_reason(self) -> str | None:
        """Why the holder is known to be gone, or None when it may still run (see the module docstring)."""
        if self.age_s > STALE_AFTER_S:
            return f"no heartbeat for {self.age_s / 60:.0f} min"
        if self.host != HOST or self.pid <= 0:
            return None
        if not pid_alive(self.pid):
            return "its process no longer runs on this host"
        now = process_start(self.pid)
        if self.pid_start is not None and now is not None and now != self.pid_start:
            return "its pid now belongs to another process"
        return None


class LockBusy(Exception):
    """The lock is held by a job that may still run."""

    def __init__(self, path: Path, holder: LockHolder) -> None:
        super().__init__(f"{path} is held by {holder.describe()}")
        self.path = path
        self.holder = holder


def process_start(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot (``/proc/<pid>/stat`` field 22), or None
    where there is no /proc or the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def read_lock(path: Path) -> LockHolder | None:
    """The holder written in ``path``; None when there is no lock. A lock still empty or unreadable after
    0.1 s gives a holder with host ``?`` and pid 0 (an unknown job: stale only by its heartbeat)."""
    path = Path(path)
    for attempt in range(3):
        try:
            age = time.time() - path.stat().st_mtime
            d = json.loads(path.read_text(encoding="utf-8"))
            return LockHolder(host=str(d["host"]), pid=int(d["pid"]), started=str(d["started"]),
                              command=str(d.get("command", "")),
                              pid_start=None if d.get("pid_start") is None else int(d["pid_start"]),
                              state=str(d.get("state", "running")), age_s=age)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            if attempt < 2:
                time.sleep(0.05)  # created but not written yet
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return None
    return LockHolder(host="?", pid=0, started=_utc(mtime), command="(unreadable lock file)",
                      age_s=time.time() - mtime)


class RunLock:
    """A held lock: touched every ``HEARTBEAT_S`` until ``release()`` (or the end of the ``with`` block)
    deletes the file, if it still holds this lock's record."""

    def __init__(self, path: Path, holder: LockHolder, payload: bytes) -> None:
        self.path = path
        self.holder = holder
        self._payload = payload
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, name=f"lock {path.name}", daemon=True)
        self._beat.start()

    def _ours(self) -> bool:
        try:
            return self.path.read_bytes() == self._payload
        except OSError:
            return False

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            if not self._ours():
                return  # broken by another job (--break-lock): nothing to keep alive
            try:
                os.utime(self.path)
            except OSError:
                return

    def release(self) -> None:
        self._stop.set()
        if self._ours():
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def _create(path: Path) -> RunLock | None:
    """Create ``path`` exclusively and write this process into it; None if it exists."""
    holder = LockHolder(host=HOST, pid=os.getpid(), started=_utc(time.time()),
                        command=" ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else "",
                        pid_start=process_start(os.getpid()))
    record = {k: v for k, v in asdict(holder).items() if k != "age_s"}
    payload = (json.dumps(record, indent=1) + "\n").encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return None
    with os.fdopen(fd, "wb") as f:
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())
    return RunLock(path, holder, payload)


def _remove_if_same(path: Path, seen: bytes) -> bool:
    """Remove the lock at ``path`` if it still holds ``seen``; False when it changed or is gone."""
    aside = path.with_name(f"{path.name}.breaking.{HOST}.{os.getpid()}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return False
    if aside.read_bytes() == seen:
        aside.unlink()
        return True
    try:  # a fresh lock taken since we read it: put it back
        os.link(aside, path)
    except FileExistsError:
        pass
    aside.unlink()
    return False


def acquire_lock(
    path: Path, *, break_lock: bool = False, notice: Callable[[str], None] | None = None
) -> RunLock:
    """Take the lock ``path`` (see the module docstring).

    Args:
        path: the lock file (its folder is created).
        break_lock: remove a lock held by a job that may still run too (one the user knows to be gone).
        notice: told one line when a stale lock is removed or a lock is broken.

    Raises:
        LockBusy: a job that may still run holds it (without ``break_lock``).
    """
    path = Path(path)
    for _ in range(5):
        lock = _create(path)
        if lock is not None:
            return lock
        try:
            seen = path.read_bytes()
        except FileNotFoundError:
            continue
        holder = read_lock(path)
        if holder is None:
            continue
        why = holder.stale_reason() or ("--break-lock" if break_lock else None)
        if why is None:
            raise LockBusy(path, holder)
        if _remove_if_same(path, seen) and notice is not None:
            notice(f"removed the lock {path} of {holder.describe()} ({why})")
    holder = read_lock(path)
    raise LockBusy(path, holder or LockHolder(host="?", pid=0, started="?"))


def lock_holder(path: Path) -> LockHolder | None:
    """The holder of ``path`` if it may still run; None when there is no lock or it is stale."""
    holder = read_lock(path)
    if holder is None or holder.stale_reason() is not None:
        return None
    return holder


__all__ = ["HEARTBEAT_S", "HOST", "STALE_AFTER_S", "LockBusy", "LockHolder", "RunLock", "acquire_lock",
           "lock_holder", "process_start", "read_lock"]
