"""One training run per workdir: an exclusive lock on `WORKDIR/train.lock`.

The lock is the operating system's (`fcntl.flock`), so it belongs to the
running process: when that process ends, however it ends (SIGKILL included),
the kernel releases it and a rerun can resume at once. The file records the
holder's process id and host, which the refusal names. Readers (`predict`,
`evaluate`) take no lock and may read a workdir while it trains.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

LOCK_FILE = "train.lock"


class WorkdirBusy(ValueError):
  """Another process is training in the workdir."""


class WorkdirLock:
  """Context manager holding the lock on `workdir` (which must exist)."""

  def __init__(self, workdir: Path):
    self.path = Path(workdir) / LOCK_FILE
    self._file = None

  def __enter__(self) -> "WorkdirLock":
    handle = open(self.path, "a+")
    try:
      fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      handle.seek(0)
      holder = handle.read().strip() or "another process"
      handle.close()
      raise WorkdirBusy(
          f"{self.path.parent} is in use by a training run ({holder}). Wait for it to end, "
          "stop it, or choose another --workdir.") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on host {socket.gethostname()}\n")
    handle.flush()
    self._file = handle
    return self

  def __exit__(self, *exc) -> None:
    self._file.close()  # closing releases the lock
    self._file = None
