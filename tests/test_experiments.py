"""Each experiment's tiny variant runs end to end."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_search_default_tiny(mrpc_dir, tmp_path):
  env = {**os.environ, "PYTHONPATH": str(ROOT), "FLAX_MRPC_DATA_DIR": str(mrpc_dir)}
  proc = subprocess.run(
      [sys.executable, str(ROOT / "experiments" / "search_default.py"), "--tiny",
       "--out", str(tmp_path)], env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr
  records = json.loads((tmp_path / "default_search_round2_tiny.json").read_text())
  assert [r["candidate"] for r in records] == ["base", "pos_weight 1.5"]
  assert all(0.0 <= r["validation"]["accuracy"] <= 1.0 for r in records)
  assert proc.stdout.splitlines()[0].split()[:2] == ["candidate", "score"]


def test_finetune_throughput_benchmark_runs(random_bert, mrpc_dir):
  env = {**os.environ, "PYTHONPATH": str(ROOT), "FLAX_MRPC_DATA_DIR": str(mrpc_dir)}
  proc = subprocess.run(
      [sys.executable, str(ROOT / "experiments" / "benchmarks" / "finetune_throughput.py"),
       "--pretrained", str(random_bert), "--steps", "2", "--max-length", "16",
       "--torch"],
      env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr
  rows = {line[:28].strip(): line[28:].split() for line in proc.stdout.splitlines()[2:]}
  assert set(rows) == {"flax_mrpc, preset", "flax_mrpc, random order", "PyTorch, random order"}
  assert all(float(r[2]) > 0 for r in rows.values())  # examples/s


def test_throughput_benchmark_runs():
  env = {**os.environ, "PYTHONPATH": str(ROOT)}
  proc = subprocess.run(
      [sys.executable, str(ROOT / "experiments" / "benchmarks" / "throughput.py"),
       "--batch-sizes", "2", "--steps", "1", "--torch", "--peak-tflops", "1"],
      env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr
  rows = [line.split() for line in proc.stdout.splitlines()[2:]]
  assert [r[3:5] for r in rows] == [["flax_mrpc", "none"], ["PyTorch", "eager"]]
  assert all(float(r[5]) > 0 and r[-1].endswith("%") for r in rows)  # examples/s and MFU


def test_data_sources_benchmark_runs(mrpc_dir):
  env = {**os.environ, "PYTHONPATH": str(ROOT)}
  proc = subprocess.run(
      [sys.executable, str(ROOT / "experiments" / "benchmarks" / "data_sources.py"),
       "--data-dir", str(mrpc_dir)], env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr
  rows = [line.split() for line in proc.stdout.splitlines()]  # TFDS also prints here
  rows = {r[0]: r[1:] for r in rows if r and r[0] in ("local", "tfds", "hf")}
  assert set(rows) == {"local", "tfds", "hf"} and all(len(r) == 2 for r in rows.values())
  assert all(float(seconds) > 0 for row in rows.values() for seconds in row)
