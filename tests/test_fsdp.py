"""fsdp on 4 fake CPU devices (tests/fsdp_worker.py): the parameters that
sharding trains, a quarter of the state on each device, bitwise resume, and
its workdir scored on this process's one device."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from flax_mrpc import inference
from flax_mrpc.training import parallel

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fsdp(tmp_path_factory, mrpc_dir):
  folder = tmp_path_factory.mktemp("fsdp")
  proc = subprocess.run(
      [sys.executable, str(ROOT / "tests" / "fsdp_worker.py"), str(folder / "runs.npz"),
       str(folder / "workdir"), str(mrpc_dir)],
      env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with np.load(folder / "runs.npz") as f:
    return {key: f[key] for key in f.files}, folder / "workdir", proc.stderr


def _group(results, prefix):
  return {k.split(" ", 1)[1]: v for k, v in results.items() if k.startswith(prefix + " ")}


def test_fsdp_trains_the_parameters_that_sharding_trains(fsdp):
  results, _, _ = fsdp
  sharded, replicated = _group(results, "fsdp"), _group(results, "sharding")
  assert len(sharded) == len(replicated) > 10
  for key, value in replicated.items():
    np.testing.assert_allclose(sharded[key], value, atol=1e-5, err_msg=key)


def test_fsdp_with_micro_batches_equals_the_whole_batches(fsdp):
  results, _, _ = fsdp
  accumulated, whole = _group(results, "fsdp+accumulate"), _group(results, "fsdp")
  assert accumulated.keys() == whole.keys()
  for key, value in whole.items():
    np.testing.assert_allclose(accumulated[key], value, atol=1e-5, err_msg=key)


def _shards_against_full_shapes(results, prefix="shards"):
  """(name, [devices, ndim] piece shapes, the full array's shape) of every
  parameter and AdamW moment."""
  full = {k: v.shape for k, v in _group(results, "fsdp").items()}
  for key, pieces in _group(results, prefix).items():
    tree, path = key.split(" ", 1)
    if tree == "params":
      yield key, pieces, full[path]
    elif ".mu" in path or ".nu" in path:
      yield key, pieces, full[path.split(".mu", 1)[-1].split(".nu", 1)[-1]]


def test_each_device_holds_a_quarter_of_every_large_parameter_and_moment(fsdp):
  results, _, _ = fsdp
  sharded = {"params": 0, "moments": 0}
  for key, pieces, full in _shards_against_full_shapes(results):
    assert len(pieces) == 4
    if np.prod(full) >= parallel.MIN_SHARDED_SIZE:
      assert all(np.prod(piece) * 4 == np.prod(full) for piece in pieces), (key, pieces, full)
      sharded["params" if key.startswith("params") else "moments"] += 1
    else:  # biases and norms: a whole copy on each device
      assert all(tuple(piece) == full for piece in pieces), (key, pieces, full)
  assert sharded["params"] >= 9 and sharded["moments"] == 2 * sharded["params"]


def test_an_fsdp_checkpoint_resumes_bitwise_in_its_shards(fsdp):
  results, _, _ = fsdp
  uninterrupted, resumed = _group(results, "uninterrupted"), _group(results, "resumed")
  assert len(resumed) == len(uninterrupted) > 10
  for key, value in uninterrupted.items():
    np.testing.assert_array_equal(resumed[key], value, err_msg=key)
  restored, trained = _group(results, "restored"), _group(results, "shards")
  assert restored.keys() == {f"shards {k}" for k in trained}
  for key, pieces in trained.items():  # read back straight into fsdp's shards
    np.testing.assert_array_equal(restored[f"shards {key}"], pieces, err_msg=key)


def test_auto_picks_fsdp_when_the_replicated_state_would_not_fit(fsdp):
  results, _, _ = fsdp
  assert results["need fsdp"] < results["need sharding"]
  assert str(results["auto picks"]) == "fsdp"


def test_an_fsdp_workdir_is_scored_on_one_device(fsdp, splits):
  _, workdir, log = fsdp
  assert "parallel: fsdp over 4 device(s)" in log
  trained = inference.load_trained(workdir)
  lines = (workdir / "test_predictions.tsv").read_text().splitlines()[1:]
  on_four_devices = np.array([float(line.split("\t")[2]) for line in lines])
  on_one = trained.probabilities(splits["test"])
  assert len(on_one) == len(on_four_devices) == 1725
  np.testing.assert_allclose(on_one, on_four_devices, atol=1e-5)
