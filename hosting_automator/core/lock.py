"""The run lock: a kernel lock on an open file, so two runs never overlap and a crashed run leaves none behind."""

import fcntl
import os
import time


class RunLock:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = path
        self._fd = None

    def acquire(self) -> bool:
        """True when this process now holds the lock; False when another run holds it.

        Raises:
            OSError: when the lock file cannot be opened.
        """
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)  # root writing in a shared dir
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # for the operator who wonders who holds it
        self._fd = fd
        return True

    def held_for(self) -> float | None:
        """Seconds since the holder took the lock (it writes its pid then), or None when that cannot be read."""
        try:
            return max(0.0, time.time() - os.stat(self.path).st_mtime)
        except OSError:
            return None

    def holder(self) -> int | None:
        """The pid the holder wrote, or None."""
        try:
            with open(self.path, encoding="ascii", errors="replace") as stream:
                text = stream.read(32).strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def fileno(self) -> int | None:
        """The locked descriptor, or None. A child given it (pass_fds) keeps the lock held until it ends too, so a
        run killed mid-clpctl does not let the next run start while its clpctl still works."""
        return self._fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock; the file stays, harmless
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.release()
