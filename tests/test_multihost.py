"""Two processes of 2 CPU devices each train as one device does (sharding
draws the same dropout masks as one device; tests/test_parallel.py)."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from flax_mrpc import train
from flax_mrpc.config import get_preset

ROOT = Path(__file__).resolve().parents[1]
RUN = ["--preset", "tiny", "--epochs", "2", "--set", "train_fraction=0.1", "--no-progress",
       "--parallel", "sharding"]

pytestmark = pytest.mark.slow  # subprocess end-to-end runs




def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _start_workers(mrpc_dir, workdir, *flags):
  """Processes 1 and 0 of a 2-process run, 2 CPU devices each."""
  env = {**os.environ, "PYTHONPATH": str(ROOT), "FLAX_MRPC_DATA_DIR": str(mrpc_dir),
         "XLA_FLAGS": os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"}
  address = f"localhost:{_free_port()}"
  return [subprocess.Popen(
      [sys.executable, "-m", "flax_mrpc.train", *RUN, *flags, "--workdir", str(workdir),
       "--multi-host", "--coordinator-address", address, "--num-processes", "2",
       "--process-id", str(i)], env=env, stderr=subprocess.PIPE, text=True)
      for i in (1, 0)]


def _stderr_of(workers, timeout):
  """Each worker's stderr once all have exited; kills them all if one hangs."""
  try:
    return [w.communicate(timeout=timeout)[1] for w in workers]
  finally:
    for w in workers:
      w.kill()


def test_two_processes_train_as_one_device(mrpc_dir, tmp_path):
  workers = _start_workers(mrpc_dir, tmp_path / "multi")
  config = get_preset("tiny").replace(epochs=2, train_fraction=0.1)
  # A mesh of this process's one device: the dropout bits of a mesh, as the workers draw them.
  train.train_and_evaluate(config, tmp_path / "single", mrpc_dir, progress=False,
                           parallel_mode="sharding")
  logs = _stderr_of(workers, timeout=600)
  assert [w.returncode for w in workers] == [0, 0], logs
  assert "epoch 2:" in logs[1] and "epoch 2:" not in logs[0]  # only process 0 logs

  def read(name):
    history = [json.loads(line) for line in
               (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    predictions = np.loadtxt(tmp_path / name / "test_predictions.tsv", skiprows=1)
    return history, predictions

  (multi_history, multi_predictions), (history, predictions) = read("multi"), read("single")
  assert "over 4 device(s)" in logs[1]
  np.testing.assert_allclose([h["train_loss"] for h in multi_history],
                             [h["train_loss"] for h in history], atol=1e-5)
  assert [h["validation"] for h in multi_history] == [h["validation"] for h in history]
  assert np.ptp(predictions[:, 2]) > 1e-4  # distinct scores, so the comparison means something
  np.testing.assert_allclose(multi_predictions, predictions, atol=2e-6)


def test_sigterm_to_one_process_stops_both_at_the_same_step(mrpc_dir, tmp_path):
  workers = _start_workers(mrpc_dir, tmp_path, "--epochs", "40")
  for line in workers[1].stderr:  # process 0 logs each epoch
    if line.startswith("epoch 1:"):
      break
  workers[0].send_signal(signal.SIGTERM)  # process 1 alone gets the notice
  logs = _stderr_of(workers, timeout=300)
  assert [w.returncode for w in workers] == [train.EXIT_PREEMPTED] * 2, logs
  stopped = [re.findall(r"stopped by a signal at step (\d+)", log) for log in logs]
  assert stopped[0] == stopped[1] and len(stopped[0]) == 1, logs
  assert (tmp_path / "checkpoints" / stopped[0][0]).is_dir()
