"""The run lock (``segkit.io.run_lock``) with real processes: an O_EXCL race has one winner, a killed holder's
lock is stale on its host, another host's lock is stale only by its heartbeat (untouched over an observation
window) or with ``break_lock``; the heartbeat survives failed touches and flags a lock taken over; removals
interleaved step by step (monkeypatched) leave one winner."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from segkit.io import run_lock
from segkit.io.run_lock import HOST, LockBusy, LockLost, acquire_lock, lock_holder, process_start, read_lock

REPO = Path(__file__).resolve().parents[2]

# a job that takes the lock argv[1] when the clock passes argv[2], says "won"/"busy", and holds it until the
# file argv[3] exists (at most 2 minutes)
RACER = """
import os, sys, time
from segkit.io.run_lock import LockBusy, acquire_lock
while time.time() < float(sys.argv[2]):
    time.sleep(0.001)
try:
    lock = acquire_lock(sys.argv[1], notice=lambda line: print("notice", line, flush=True))
except LockBusy as e:
    print("busy", e.holder.pid, flush=True)
    sys.exit(0)
print("won", flush=True)
t = time.time()
while not os.path.exists(sys.argv[3]) and time.time() < t + 120:
    time.sleep(0.01)
lock.release()
"""


def _python(code: str, *args: object) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], stdout=subprocess.PIPE, text=True,
                            env=env)


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def _write_lock(path: Path, **fields: object) -> None:
    record = {"state": "running", "host": HOST, "pid": os.getpid(), "started": "2026-12-06T07:00:00Z",
              "command": "segkit cv x.yaml --fold 1", "pid_start": None, **fields}
    path.write_text(json.dumps(record), encoding="utf-8")


@pytest.mark.parametrize("stale_first", [False, True], ids=["free", "stale"])
def test_of_processes_racing_for_one_lock_exactly_one_wins(tmp_path: Path, stale_first: bool) -> None:
    lock = tmp_path / "fold_0.lock"
    if stale_first:  # all find the same stale lock: the rename-and-check lets one of them take it
        _write_lock(lock, pid=_dead_pid())
    start = time.time() + 0.8  # the interpreters started and waiting by then (a late one still finds it held)
    release = tmp_path / "release"
    procs = [_python(RACER, lock, start, release) for _ in range(5)]
    first = [p.stdout.readline() if p.stdout else "" for p in procs]
    release.touch()  # every racer has answered: the winner may let go
    # read on through the same text buffer (communicate() would skip lines readline() buffered already)
    outs = [f + (p.stdout.read() if p.stdout else "") for f, p in zip(first, procs, strict=True)]
    for p in procs:
        p.wait(timeout=60)
    verdicts = [line.split()[0] for o in outs for line in o.splitlines() if line.split()[0] != "notice"]
    assert sorted(verdicts) == ["busy"] * 4 + ["won"], outs
    winner = next(p.pid for p, o in zip(procs, outs, strict=True) if "won" in o)
    assert all(o.split()[-1] == str(winner) for o in outs if o.startswith("busy")), outs  # they name it
    notices = [line for o in outs for line in o.splitlines() if line.startswith("notice")]
    assert len(notices) == (1 if stale_first else 0), notices
    assert not lock.exists() and not list(tmp_path.glob("*.breaking*"))  # released, nothing left behind


def test_a_lock_names_its_holder_and_only_its_holder_removes_it(tmp_path: Path) -> None:
    path = tmp_path / "runs" / "fold_2.lock"
    with acquire_lock(path) as lock:
        record = json.loads(path.read_text())
        assert record["state"] == "running" and record["host"] == HOST and record["pid"] == os.getpid()
        assert record["pid_start"] == process_start(os.getpid()) is not None
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", record["started"])
        assert lock.holder.describe() == f"host {HOST}, pid {os.getpid()}, since {record['started']}"
        with pytest.raises(LockBusy) as busy:  # this process is alive: a second acquire is refused
            acquire_lock(path)
        assert busy.value.holder == read_lock(path) and lock_holder(path) is not None
    assert not path.exists()
    lock = acquire_lock(path)
    _write_lock(path, pid=12345678, host="other-node")  # broken and taken by another job meanwhile
    lock.release()
    assert json.loads(path.read_text())["host"] == "other-node"  # not ours: left alone


def test_a_killed_holder_leaves_a_stale_lock_that_the_next_job_takes_with_a_notice(tmp_path: Path) -> None:
    path = tmp_path / "fold_1.lock"
    holder = _python(RACER, path, 0, tmp_path / "never")
    assert holder.stdout is not None and holder.stdout.readline().strip() == "won"
    try:
        with pytest.raises(LockBusy) as busy:
            acquire_lock(path)
        assert busy.value.holder.pid == holder.pid and busy.value.holder.host == HOST
    finally:
        holder.kill()
        holder.wait()
    assert lock_holder(path) is None and path.exists()  # stale, not removed by reading it
    notices: list[str] = []
    with acquire_lock(path, notice=notices.append):
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert notices == [f"removed the lock {path} of host {HOST}, pid {holder.pid}, since "
                       f"{busy.value.holder.started} (its process no longer runs on this host)"]


def test_other_hosts_locks_are_stale_only_by_heartbeat_or_when_broken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_lock, "OBSERVE_S", 0.05)
    path = tmp_path / "fold_0.lock"
    _write_lock(path, host="node07", pid=4242)
    with pytest.raises(LockBusy):  # pid 4242 may run on node07: not checkable from here
        acquire_lock(path)
    old = time.time() - run_lock.STALE_AFTER_S - 60
    os.utime(path, (old, old))  # 11 minutes without a heartbeat: the job on node07 is gone
    assert read_lock(path).stale_reason() == "no heartbeat for 11 min"  # type: ignore[union-attr]
    notices: list[str] = []
    acquire_lock(path, notice=notices.append).release()
    assert notices[0].endswith("(no heartbeat for 11 min)")

    _write_lock(path, host="node07", pid=4242)
    acquire_lock(path, break_lock=True, notice=notices.append).release()
    assert notices[1] == (f"removed the lock {path} of host node07, pid 4242, since 2026-12-06T07:00:00Z"
                          " (--break-lock)")
    # this host, a live pid that started at another time: the pid was recycled, the holder is gone
    _write_lock(path, pid=os.getpid(), pid_start=(process_start(os.getpid()) or 0) + 1)
    assert read_lock(path).stale_reason() == "its pid now belongs to another process"  # type: ignore[union-attr]


def test_the_holder_touches_its_lock_while_it_holds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_lock, "HEARTBEAT_S", 0.05)
    path = tmp_path / "fold_0.lock"
    with acquire_lock(path):
        old = time.time() - 3600
        os.utime(path, (old, old))
        time.sleep(0.5)
        assert read_lock(path).age_s < 60  # type: ignore[union-attr]


def test_a_lock_that_looks_old_but_is_touched_while_observed_is_live(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # this machine's clock runs 11 minutes ahead of the file server: node07's lock looks 11 minutes old, but
    # its holder touches it during the observation window
    monkeypatch.setattr(run_lock, "OBSERVE_S", 5.0)
    path = tmp_path / "fold_0.lock"
    _write_lock(path, host="node07", pid=4242)
    old = time.time() - run_lock.STALE_AFTER_S - 60
    os.utime(path, (old, old))
    beat = threading.Timer(0.1, os.utime, (path,))  # node07's next heartbeat
    beat.start()
    t0 = time.monotonic()
    with pytest.raises(LockBusy) as busy:
        acquire_lock(path)
    beat.join()
    assert busy.value.holder.host == "node07" and time.monotonic() - t0 < 4  # seen at once, not after 5 s
    assert path.exists() and not list(tmp_path.glob("*.breaking*"))
    # a heartbeat an hour in the future (this clock runs behind): live, also to the status query
    future = time.time() + 3600
    os.utime(path, (future, future))
    assert read_lock(path).stale_reason() is None and lock_holder(path) is not None  # type: ignore[union-attr]
    with pytest.raises(LockBusy):
        acquire_lock(path)


def test_the_heartbeat_outlives_failed_touches_and_stops_when_another_job_took_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_lock, "HEARTBEAT_S", 0.02)
    path = tmp_path / "fold_0.lock"
    real_utime = os.utime
    failures = {"left": 5}

    def flaky_utime(p: object, *args: object, **kw: object) -> None:
        if p == path and not args and failures["left"] > 0:  # the heartbeat's touch: a passing NFS error
            failures["left"] -= 1
            raise OSError(5, "Input/output error")
        real_utime(p, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "utime", flaky_utime)
    lock = acquire_lock(path)
    old = time.time() - 3600
    real_utime(path, (old, old))
    aside = tmp_path / "aside"
    os.rename(path, aside)  # another process has it renamed aside for a moment
    time.sleep(0.1)
    os.rename(aside, path)
    deadline = time.monotonic() + 5
    while read_lock(path).age_s > 60 and time.monotonic() < deadline:  # type: ignore[union-attr]
        time.sleep(0.02)
    assert failures["left"] == 0 and read_lock(path).age_s < 60  # type: ignore[union-attr]
    assert not lock.lost
    lock.ensure_held()

    _write_lock(path, host="node07", pid=4242)  # broken and taken by a job on node07
    while not lock.lost and time.monotonic() < deadline:
        time.sleep(0.02)
    assert lock.lost
    with pytest.raises(LockLost, match=f"{path} was taken over by host node07, pid 4242, since "):
        lock.ensure_held()
    lock.release()
    assert read_lock(path).host == "node07"  # type: ignore[union-attr]  # not ours: left alone


@pytest.mark.parametrize("when", ["before", "inside"])
def test_two_jobs_removing_one_stale_lock_leave_one_winner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    """B has read the stale lock and judged it stale; A then takes the folder, either before B asks for
    ``.breaking`` (A removes the lock and creates its own) or while B holds ``.breaking`` (A waits, judges
    B's ``.breaking`` stale: B looks dead, A removes the lock and creates its own). B must not remove A's
    lock, and a third job C finds A's."""
    monkeypatch.setattr(run_lock, "BREAKING_STALE_S", 0.05)
    path = tmp_path / "fold_0.lock"
    _write_lock(path, pid=_dead_pid())
    real_take = run_lock._take_breaking
    a: list[run_lock.RunLock] = []
    notices: list[str] = []
    started: list[str] = []

    def a_acquires() -> None:
        started.append("A")
        a.append(acquire_lock(path, notice=lambda line: notices.append("A " + line)))

    def interleaved(p: Path) -> tuple[Path, bytes]:
        if started:  # A's own steps, and B's after A's
            return real_take(p)
        if when == "before":
            a_acquires()
            return real_take(p)
        held = real_take(p)
        a_acquires()
        return held

    monkeypatch.setattr(run_lock, "_take_breaking", interleaved)
    with pytest.raises(LockBusy) as busy:  # B
        acquire_lock(path, notice=lambda line: notices.append("B " + line))
    assert len(a) == 1 and busy.value.holder == a[0].holder == read_lock(path)
    assert len(notices) == 1 and notices[0].startswith("A removed the lock")
    with pytest.raises(LockBusy) as c_busy:  # C
        acquire_lock(path)
    assert c_busy.value.holder == a[0].holder and not a[0].lost
    a[0].release()
    assert list(tmp_path.iterdir()) == []


def test_a_breaking_file_left_by_a_dead_process_is_removed_after_a_while(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_lock, "BREAKING_STALE_S", 0.1)
    path = tmp_path / "fold_0.lock"
    lock = acquire_lock(path)
    mark = tmp_path / "fold_0.lock.breaking"
    mark.write_text("node07 4242 killed while removing a lock\n")
    t0 = time.monotonic()
    lock.release()  # waits for .breaking, finds it unchanged for 0.1 s, removes it, then the lock
    assert 0.1 <= time.monotonic() - t0 < 2 and list(tmp_path.iterdir()) == []


def test_release_after_the_folder_was_deleted_raises_nothing(tmp_path: Path) -> None:
    path = tmp_path / "run" / "fold_0.lock"
    lock = acquire_lock(path)
    path.unlink()
    path.parent.rmdir()  # the run folder deleted by hand while the fold trained
    lock.release()
    assert not path.parent.exists()
