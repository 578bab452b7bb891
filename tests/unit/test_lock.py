"""RunLock: a kernel lock on an open file description, so a second run is refused, a released holder leaves
nothing behind, and a lock file that cannot be opened is an OSError. A holder in another process, SIGKILLed:
tests/integration/test_lock.py."""

import os

import pytest

from hosting_automator.core.lock import RunLock


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


@pytest.mark.parametrize("where, error", [("parent is a file", NotADirectoryError),
                                          ("parent is missing", FileNotFoundError)])
def test_acquire_path_that_cannot_be_opened_raises_oserror(tmp_path, where, error):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    path = blocker / "run.lock" if where == "parent is a file" else tmp_path / "missing" / "run.lock"

    with pytest.raises(OSError) as caught:
        RunLock(str(path)).acquire()

    assert type(caught.value) is error
