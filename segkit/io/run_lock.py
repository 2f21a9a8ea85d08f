"""A lock file that says a job is running in a folder, for jobs on several machines sharing a file system.

``acquire_lock(path)`` creates ``path`` with ``O_CREAT | O_EXCL`` (atomic on a local file system and on NFS
v3 and later: of several processes creating it at once exactly one succeeds) and writes who holds it::

    {"state": "running", "host": "node07", "pid": 4242, "pid_start": 8812345,
     "started": "2026-12-06T07:30:12Z", "command": "segkit cv configs/la.yaml --fold 2"}

While the lock is held, a daemon thread touches the file every ``HEARTBEAT_S`` seconds (its modification
time is the heartbeat). A failed read or touch (a passing NFS error) is retried at the next beat; the
thread stops only when the file holds another job's record: the lock was broken and taken by another job.
It then sets ``RunLock.lost``, and the holder must stop before writing more (``RunLock.ensure_held`` raises
``LockLost``). A lock is *stale* when

- its host is this machine and its process no longer runs, or the pid now belongs to another process
  (``pid_start``, the start time from ``/proc/<pid>/stat``, differs: a recycled pid), or
- its heartbeat looks older than ``STALE_AFTER_S`` by this machine's clock *and* the file's modification
  time stays the same for ``OBSERVE_S`` more seconds (two heartbeats; a job killed on another machine:
  SIGKILL at a SLURM time limit, a node that went down). A clock running ahead therefore costs only that
  wait: a live holder touches its lock within it. A heartbeat in the future (a clock running behind the
  file server) is never stale by its age.

``acquire_lock`` removes a stale lock and takes the folder, after telling ``notice`` one line; a live lock
raises ``LockBusy``, unless ``break_lock=True`` (``--break-lock``: the user knows the job is gone).
Every removal of a lock file (breaking a stale or broken lock, and ``RunLock.release``) happens while holding
a second file, ``<lock>.breaking``, also created with ``O_EXCL`` and deleted after: the remover reads the
lock again under it and deletes it only if it still holds the record judged stale (or, for ``release``, this
job's own record). As no one else removes the lock meanwhile, nobody can create a new one in between, so two
processes finding the same stale lock cannot both take the folder. A ``.breaking`` file that stays
unchanged for ``BREAKING_STALE_S`` seconds was left by a process that died while removing: it is removed.

Example:
    >>> with acquire_lock(Path("runs/la-cv/fold_2.lock")) as lock:
    ...     for epoch in epochs:                              # LockBusy if another live job holds it
    ...         lock.ensure_held()                            # LockLost once another job took it
    ...         train_one_epoch()
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType

from segkit.io.atomic import pid_alive

HOST = socket.gethostname()
HEARTBEAT_S = 30.0
STALE_AFTER_S = 600.0
"""A lock whose file has not been touched for this long is stale, whatever its host (20 missed beats)."""
OBSERVE_S = 2 * HEARTBEAT_S
"""How long a lock that looks stale by its age must stay untouched before it is removed."""
BREAKING_STALE_S = 30.0
"""A ``<lock>.breaking`` file unchanged for this long was left by a process that died while removing."""
BREAKING_SUFFIX = ".breaking"
_POLL_S = 0.01


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


@dataclass(frozen=True)
class LockHolder:
    """Who holds a lock: the file's JSON; ``age_s``, the seconds since its last heartbeat by this machine's
    clock, and ``mtime``, the file's modification time (neither stored)."""

    host: str
    pid: int
    started: str
    command: str = ""
    pid_start: int | None = None
    state: str = "running"
    age_s: float = field(default=0.0, compare=False)
    mtime: float = field(default=0.0, compare=False)

    def describe(self) -> str:
        """``host node07, pid 4242, since 2026-12-06T07:30:12Z``."""
        return f"host {self.host}, pid {self.pid}, since {self.started}"

    def stale_reason(self) -> str | None:
        """Why the holder is known to be gone, or None when it may still run (see the module docstring).
        An old heartbeat is judged by this machine's clock alone: ``acquire_lock`` also waits ``OBSERVE_S``
        for it to change before removing the lock."""
        if self.host == HOST and self.pid > 0:
            if not pid_alive(self.pid):
                return "its process no longer runs on this host"
            now = process_start(self.pid)
            if self.pid_start is not None and now is not None and now != self.pid_start:
                return "its pid now belongs to another process"
        if self.age_s > STALE_AFTER_S:  # a heartbeat in the future (negative age) is live
            return f"no heartbeat for {self.age_s / 60:.0f} min"
        return None


class LockBusy(Exception):
    """The lock is held by a job that may still run."""

    def __init__(self, path: Path, holder: LockHolder) -> None:
        super().__init__(f"{path} is held by {holder.describe()}")
        self.path = path
        self.holder = holder


class LockLost(Exception):
    """The lock this job held was broken and taken by another job (``holder``, None if unreadable)."""

    def __init__(self, path: Path, holder: LockHolder | None) -> None:
        who = holder.describe() if holder is not None else "an unknown job"
        super().__init__(f"{path} was taken over by {who}")
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
            mtime = path.stat().st_mtime
            d = json.loads(path.read_text(encoding="utf-8"))
            return LockHolder(host=str(d["host"]), pid=int(d["pid"]), started=str(d["started"]),
                              command=str(d.get("command", "")),
                              pid_start=None if d.get("pid_start") is None else int(d["pid_start"]),
                              state=str(d.get("state", "running")), age_s=time.time() - mtime, mtime=mtime)
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
                      age_s=time.time() - mtime, mtime=mtime)


def _take_breaking(path: Path) -> tuple[Path, bytes]:
    """Create ``<path>.breaking`` exclusively, waiting while another process holds it; one left unchanged for
    ``BREAKING_STALE_S`` (by this process's monotonic clock, not the file's time) is removed first.
    Returns the file and the token written in it."""
    mark = path.with_name(path.name + BREAKING_SUFFIX)
    token = f"{HOST} {os.getpid()} {uuid.uuid4().hex}\n".encode("ascii")
    seen: bytes | None = None
    since = time.monotonic()
    while True:
        try:
            fd = os.open(mark, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                now = mark.read_bytes()
            except FileNotFoundError:
                continue
            if now != seen:
                seen, since = now, time.monotonic()
            elif time.monotonic() - since > BREAKING_STALE_S:
                _unlink_if(mark, now)  # its process died while removing a lock
                seen = None
                continue
            time.sleep(_POLL_S)
            continue
        with os.fdopen(fd, "wb") as f:
            f.write(token)
        return mark, token


def _unlink_if(path: Path, content: bytes) -> bool:
    """Delete ``path`` if it holds ``content``; False when it is gone or holds something else."""
    try:
        if path.read_bytes() != content:
            return False
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def _remove_if_same(path: Path, seen: bytes) -> bool:
    """Remove the lock at ``path`` if it still holds ``seen``, holding ``<path>.breaking`` meanwhile (every
    remover does, so the lock cannot be removed and created anew between the check and the removal);
    False when it changed or is gone."""
    mark, token = _take_breaking(path)
    try:
        return _unlink_if(path, seen)
    finally:
        _unlink_if(mark, token)  # not one that replaced ours after judging it stale


class RunLock:
    """A held lock: touched every ``HEARTBEAT_S`` until ``release()`` (or the end of the ``with`` block)
    deletes the file, if it still holds this lock's record. ``lost`` is set once another job's record is
    found in the file."""

    def __init__(self, path: Path, holder: LockHolder, payload: bytes) -> None:
        self.path = path
        self.holder = holder
        self._payload = payload
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, name=f"lock {path.name}", daemon=True)
        self._beat.start()

    @property
    def lost(self) -> bool:
        """True once the heartbeat found another job's record in the lock file."""
        return self._lost.is_set()

    def ensure_held(self) -> None:
        """Raise ``LockLost`` if the lock was taken by another job (checked by each heartbeat)."""
        if self._lost.is_set():
            raise LockLost(self.path, read_lock(self.path))

    def _check(self) -> bool | None:
        """True: the file holds our record; False: it holds another record; None: gone or unreadable now."""
        try:
            return self.path.read_bytes() == self._payload
        except OSError:
            return None

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            ours = self._check()
            if ours is False:
                self._lost.set()
                return  # broken and taken by another job: nothing to keep alive
            if ours is None:
                continue  # a passing error, or removed by --break-lock: the next beat looks again
            try:
                os.utime(self.path)
            except OSError:
                continue

    def release(self) -> None:
        """Stop the heartbeat and delete the file if it holds this lock's record (under ``.breaking``). A
        folder gone or no longer writable leaves the lock as it is (stale once this process has ended)."""
        self._stop.set()
        try:
            _remove_if_same(self.path, self._payload)
        except OSError:
            pass

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
    record = {k: v for k, v in asdict(holder).items() if k not in ("age_s", "mtime")}
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


def _untouched(path: Path, holder: LockHolder) -> bool:
    """Whether ``path`` keeps ``holder``'s modification time for ``OBSERVE_S`` seconds (no heartbeat)."""
    end = time.monotonic() + OBSERVE_S
    while True:
        try:
            if path.stat().st_mtime != holder.mtime:
                return False
        except FileNotFoundError:
            return False
        if time.monotonic() >= end:
            return True
        time.sleep(min(1.0, max(_POLL_S, OBSERVE_S / 20)))


def _why_remove(path: Path, holder: LockHolder, break_lock: bool) -> str | None:
    """Why the lock of ``holder`` may be removed (stale, or ``break_lock``), or None when it must stay."""
    why = holder.stale_reason()
    if why is not None and why.startswith("no heartbeat") and not break_lock and not _untouched(path, holder):
        return None  # touched meanwhile: this machine's clock runs ahead, the holder lives
    return why or ("--break-lock" if break_lock else None)


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
        why = _why_remove(path, holder, break_lock)
        if why is None:
            raise LockBusy(path, read_lock(path) or holder)
        if _remove_if_same(path, seen) and notice is not None:
            notice(f"removed the lock {path} of {holder.describe()} ({why})")
    holder = read_lock(path)
    raise LockBusy(path, holder or LockHolder(host="?", pid=0, started="?"))


def lock_holder(path: Path) -> LockHolder | None:
    """The holder of ``path`` if it may still run; None when there is no lock or it is stale (judged at once,
    without ``acquire_lock``'s ``OBSERVE_S`` wait)."""
    holder = read_lock(path)
    if holder is None or holder.stale_reason() is not None:
        return None
    return holder


__all__ = ["BREAKING_STALE_S", "BREAKING_SUFFIX", "HEARTBEAT_S", "HOST", "OBSERVE_S", "STALE_AFTER_S",
           "LockBusy", "LockHolder", "LockLost", "RunLock", "acquire_lock", "lock_holder", "process_start",
           "read_lock"]
