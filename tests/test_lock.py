"""RunLock: a kernel lock on an open file description, so a second run is refused, a released or crashed holder
leaves nothing behind, and a lock file that cannot be opened is an OSError."""

import os
import signal
import subprocess
import sys

import pytest

from hosting_automator.core.lock import RunLock

HOLDER = """
import sys, time
from hosting_automator.core.lock import RunLock
lock = RunLock(sys.argv[1])
print("locked" if lock.acquire() else "refused", flush=True)
time.sleep(60)
"""


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def test_acquire_second_instance_same_path_returns_false_until_released(tmp_path):
    path = str(tmp_path / "run.lock")
    first, second = RunLock(path), RunLock(path)

    assert first.acquire() is True
    assert second.acquire() is False
    first.release()
    assert second.acquire() is True
    second.release()


def test_acquire_writes_holder_pid_for_the_operator(tmp_path):
    path = tmp_path / "run.lock"
    path.write_text("99999\nstale text from an earlier run\n")

    with RunLock(str(path)) as lock:
        assert lock.acquire() is True
        assert path.read_text() == f"{os.getpid()}\n"


def test_acquire_refused_closes_its_file_and_leaves_holder_pid(tmp_path):
    path = tmp_path / "run.lock"
    holder = RunLock(str(path))
    holder.acquire()
    before = open_fds()

    assert RunLock(str(path)).acquire() is False

    assert open_fds() == before
    assert path.read_text() == f"{os.getpid()}\n"
    holder.release()


def test_context_manager_exit_releases_the_lock(tmp_path):
    path = str(tmp_path / "run.lock")
    with RunLock(path) as lock:
        assert lock.acquire() is True

    assert RunLock(path).acquire() is True


def test_release_without_acquire_is_harmless(tmp_path):
    lock = RunLock(str(tmp_path / "run.lock"))
    lock.release()
    lock.release()
    assert lock.acquire() is True


def test_acquire_after_holder_was_sigkilled_succeeds(tmp_path):
    path = tmp_path / "run.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert RunLock(str(path)).acquire() is False
        assert path.read_text() == f"{holder.pid}\n"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        holder.stdout.close()

    assert holder.returncode == -signal.SIGKILL
    assert path.exists()  # the file stays; the lock went with the process
    lock = RunLock(str(path))
    assert lock.acquire() is True
    lock.release()


@pytest.mark.parametrize("where, error", [("parent is a file", NotADirectoryError),
                                          ("parent is missing", FileNotFoundError)])
def test_acquire_path_that_cannot_be_opened_raises_oserror(tmp_path, where, error):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    path = blocker / "run.lock" if where == "parent is a file" else tmp_path / "missing" / "run.lock"

    with pytest.raises(OSError) as caught:
        RunLock(str(path)).acquire()

    assert type(caught.value) is error
