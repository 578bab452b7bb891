"""RunLock held by another process: refused while it lives, free once it is SIGKILLed (the file stays, the lock
goes with the process)."""

import signal
import subprocess
import sys

from hosting_automator.core.lock import RunLock


HOLDER = """
import sys, time
from hosting_automator.core.lock import RunLock
lock = RunLock(sys.argv[1])
print("locked" if lock.acquire() else "refused", flush=True)
time.sleep(60)
"""


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
