"""A run's workdir: created and held by one run at a time, refused once
finished unless overwritten, and finished by writing `results.json`.

The hold is an exclusive lock on `WORKDIR/train.lock`, the operating
system's (`fcntl.flock`), so it belongs to the running process: when that
process ends, however it ends (SIGKILL included), the kernel releases it and
a rerun can resume at once. The file records the holder's process id and
host, which the refusal names. Readers (`predict`, `evaluate`) take no lock
and may read a workdir while it trains.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
from pathlib import Path
from typing import Any, Iterable, Iterator

import flax
import jax

from flax_mrpc.training import parallel

LOCK_FILE = "train.lock"
RESULTS_FILE = "results.json"  # written last: a workdir holding it holds a finished run


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


def create_workdir(workdir: Path) -> None:
  """Makes sure `workdir` is a folder this process can write, creating it
  (main process). Raises ValueError naming the problem otherwise."""
  if workdir.exists() and not workdir.is_dir():
    raise ValueError(f"--workdir {workdir} is a file, not a folder. Choose another --workdir.")
  if parallel.is_main_process():
    try:
      workdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
      raise ValueError(f"--workdir {workdir} cannot be created ({e.strerror}). Choose a "
                       "folder you can write to.") from None
  parallel.barrier("workdir created")
  if not os.access(workdir, os.W_OK | os.X_OK):
    raise ValueError(f"--workdir {workdir} is not writable. Choose a folder you can write to.")


@contextlib.contextmanager
def held_workdir(workdir: Path) -> Iterator[None]:
  """Creates `workdir` if needed and holds it for this run (`WorkdirLock`,
  main process) until the block ends."""
  create_workdir(workdir)
  with WorkdirLock(workdir) if parallel.is_main_process() else contextlib.nullcontext():
    yield


def clear_finished_run(workdir: Path, overwrite: bool, outputs: Iterable[str]) -> None:
  """Refuses a workdir holding a finished run (`results.json`) unless
  `overwrite`, which also removes `outputs` (file or folder names in
  `workdir`, results.json among them); unfinished checkpoints are left for
  the loop to resume. Every process checks; only the main one removes."""
  if (workdir / RESULTS_FILE).exists() and not overwrite:
    raise FileExistsError(
        f"{workdir} already holds a finished run ({RESULTS_FILE}). "
        "Pass --overwrite to replace it, or choose another --workdir.")
  parallel.barrier("workdir checked")
  if overwrite and parallel.is_main_process():
    for name in outputs:
      path = workdir / name
      if path.is_dir():
        shutil.rmtree(path)
      else:
        path.unlink(missing_ok=True)


def write_results(workdir: Path, results: dict[str, Any]) -> dict[str, Any]:
  """`results` with the machine and versions it ran on, written to
  `workdir/results.json` by the main process; returns it."""
  results = results | {
      "device": str(jax.devices()[0].device_kind),
      "host_cpus": os.cpu_count(),
      "versions": {"jax": jax.__version__, "flax": flax.__version__},
  }
  if parallel.is_main_process():
    (workdir / RESULTS_FILE).write_text(json.dumps(results, indent=2) + "\n")
  return results
