"""Data parallelism on 4 fake CPU devices equals the single-device run."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from flax_mrpc.training import metrics

pytestmark = pytest.mark.slow  # subprocess end-to-end runs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  out = tmp_path_factory.mktemp("parallel") / "runs.npz"
  proc = subprocess.run([sys.executable, str(ROOT / "tests" / "parallel_worker.py"), str(out)],
                        env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                        text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr
  with np.load(out) as f:
    results = {}
    for key in f.files:
      run, name = key.split("/", 1)
      results.setdefault(run, {})[name] = f[key]
  return results


@pytest.mark.parametrize("one_device, many_devices", [
    ("none", "pmap"), ("none+dropout", "sharding+dropout"),
    ("none+packed", "pmap+packed"), ("none+dropout+packed", "sharding+dropout+packed")])
def test_parameters_and_metrics_equal_one_device(runs, one_device, many_devices):
  one, many = runs[one_device], runs[many_devices]
  assert int(many["step"]) == int(one["step"]) == len(one["losses"])
  np.testing.assert_array_equal(many["counts"], one["counts"])
  assert one["counts"].sum() == 3 * 37  # every example once per epoch
  if "packed" not in one_device:
    assert list(one["counts"][:4]) == [10, 10, 10, 7]  # 4 batches of 10 from 37
  np.testing.assert_allclose(many["losses"], one["losses"], rtol=1e-5)
  params = [k for k in one if k.startswith("param ")]
  assert len(params) > 10
  for key in params:
    np.testing.assert_allclose(many[key], one[key], atol=1e-5, err_msg=key)
  assert one["losses"][-4:].sum() < one["losses"][:4].sum()  # it trained
  np.testing.assert_allclose(many["probabilities"], one["probabilities"], atol=1e-5)
  scores = [metrics.classification_metrics(run["labels"], run["probabilities"] > 0.5)
            for run in (one, many)]
  assert scores[0] == scores[1]


def test_the_dropout_runs_had_dropout(runs):
  assert not np.allclose(runs["none+dropout"]["losses"], runs["none"]["losses"])


@pytest.mark.parametrize("one_device, many_devices", [
    ("none+masked_lm", "pmap+masked_lm"), ("none+dropout+masked_lm", "sharding+dropout+masked_lm")])
def test_pretraining_steps_equal_one_device(runs, one_device, many_devices):
  one, many = runs[one_device], runs[many_devices]
  assert int(many["step"]) == int(one["step"]) == len(one["losses"])
  np.testing.assert_array_equal(many["counts"], one["counts"])
  assert one["counts"].min() > 0  # masked tokens in every batch
  np.testing.assert_allclose(many["losses"], one["losses"], rtol=1e-5)
  params = [k for k in one if k.startswith("param ")]
  assert any("output_bias" in k for k in params)
  for key in params:
    np.testing.assert_allclose(many[key], one[key], atol=1e-5, err_msg=key)
  assert one["losses"][-3:].sum() / one["counts"][-3:].sum() < (
      one["losses"][:3].sum() / one["counts"][:3].sum())  # it trained
