"""The real entry point, end to end, on the real MRPC files."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from flax_mrpc import train
from flax_mrpc.config import Config, get_preset
from flax_mrpc.inference import load_trained

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args, data_dir):
  env = {**os.environ, "PYTHONPATH": str(ROOT), "FLAX_MRPC_DATA_DIR": str(data_dir)}
  return subprocess.run([sys.executable, "-m", "flax_mrpc.train", *args], env=env,
                        capture_output=True, text=True, timeout=600)


# Runs the CLI as `python -m flax_mrpc.train` does, on a Python without torch.
WITHOUT_TORCH = ("import runpy, sys; sys.modules['torch'] = None; "
                 "runpy.run_module('flax_mrpc.train', run_name='__main__', alter_sys=True)")
OUR_LINES = ("encoded splits: ", "pairs: ", "memory: ", "model: ", "epoch ", "best epoch ")


@pytest.fixture(scope="module")
def tiny_run(mrpc_dir, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("tiny")
  env = {**os.environ, "PYTHONPATH": str(ROOT), "FLAX_MRPC_DATA_DIR": str(mrpc_dir)}
  proc = subprocess.run([sys.executable, "-c", WITHOUT_TORCH, "--preset", "tiny", "--workdir",
                         str(workdir), "--no-progress"], env=env, capture_output=True, text=True,
                        timeout=600)
  assert proc.returncode == 0, proc.stderr
  return workdir, proc


@pytest.mark.slow
def test_a_run_prints_only_its_own_lines_without_torch(tiny_run):
  _, proc = tiny_run
  assert "PyTorch was not found" not in proc.stderr
  assert all(line.startswith(OUR_LINES) for line in proc.stderr.splitlines()), proc.stderr


@pytest.mark.slow
def test_tiny_preset_writes_results_metrics_and_predictions(tiny_run):
  workdir, proc = tiny_run
  results = json.loads((workdir / "results.json").read_text())
  assert results["config"] == get_preset("tiny").to_dict()
  assert 1 <= results["best_epoch"] <= 2
  assert set(results["validation"]) >= {"accuracy", "f1", "precision", "recall"}
  assert results["test"]["tp"] + results["test"]["fn"] == 1147
  assert results["num_truncated"]["test"] > 0 and "truncated" in proc.stderr
  epochs = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [e["epoch"] for e in epochs] == [1, 2]
  assert epochs[results["best_epoch"] - 1]["validation"] == results["validation"]
  lines = (workdir / "test_predictions.tsv").read_text().splitlines()
  assert lines[0] == "idx\tprediction\tprobability"
  rows = [line.split("\t") for line in lines[1:]]
  assert [int(r[0]) for r in rows] == list(range(1725))
  assert {r[1] for r in rows} <= {"0", "1"}
  predicted_positive = sum(r[1] == "1" for r in rows)
  assert predicted_positive == results["test"]["tp"] + results["test"]["fp"]
  assert all((float(r[2]) >= 0.5) == (r[1] == "1") for r in rows)
  assert (workdir / "tokenizer" / "vocab.txt").is_file()


@pytest.mark.slow
def test_an_existing_run_is_not_overwritten(tiny_run, mrpc_dir, capsys):
  workdir, _ = tiny_run
  before = (workdir / "results.json").read_text()
  code = train.main(["--preset", "tiny", "--workdir", str(workdir), "--data-dir", str(mrpc_dir)])
  assert code == 2
  assert "--overwrite" in capsys.readouterr().err
  assert (workdir / "results.json").read_text() == before


def test_bad_flags_get_one_clear_error(mrpc_dir, tmp_path, capsys):
  code = train.main(["--preset", "tiny", "--workdir", str(tmp_path), "--set", "d_modle=3",
                     "--data-dir", str(mrpc_dir)])
  assert code == 2 and "NAME=VALUE" in capsys.readouterr().err
  with pytest.raises(SystemExit) as exit_info:
    train.main(["--preset", "nope", "--workdir", str(tmp_path)])
  assert exit_info.value.code == 2 and "invalid choice" in capsys.readouterr().err
  code = train.main(["--preset", "seed", "--workdir", str(tmp_path), "--set", "pad_multiple=8",
                     "--data-dir", str(mrpc_dir)])
  assert code == 2 and "leave pad_multiple unset" in capsys.readouterr().err


def test_missing_data_dir_is_one_clear_error(tmp_path, capsys):
  code = train.main(["--preset", "tiny", "--workdir", str(tmp_path / "w"), "--data-dir",
                     str(tmp_path / "missing")])
  err = capsys.readouterr().err
  assert code == 2 and err.startswith("error:") and "--data-dir" in err


def test_same_seed_same_results(mrpc_dir, tmp_path):
  config = get_preset("tiny").replace(epochs=1, train_fraction=0.25)
  a = train.train_and_evaluate(config, tmp_path / "a", mrpc_dir, progress=False)
  b = train.train_and_evaluate(config, tmp_path / "b", mrpc_dir, progress=False)
  assert a["validation"] == b["validation"] and a["test"] == b["test"]
  assert ((tmp_path / "a" / "test_predictions.tsv").read_text()
          == (tmp_path / "b" / "test_predictions.tsv").read_text())


def test_set_parses_types():
  args = train.parse_args(["--workdir", "w", "--set", "d_model=64", "--set", "pos_weight=none",
                           "--set", "swap_augment=true", "--set", "learning_rate=3e-4"])
  config = train.config_from_args(args)
  assert config.model.d_model == 64 and config.train.pos_weight is None
  assert config.train.swap_augment is True and config.train.learning_rate == 3e-4
  args = train.parse_args(["--workdir", "w", "--set", "patience=4", "--set", "clip_norm=none",
                           "--set", "max_positions=128", "--set", "activation=relu"])
  config = train.config_from_args(args)
  assert config.train.patience == 4 and config.train.clip_norm is None
  assert config.model.max_positions == 128 and config.model.activation == "relu"
  with pytest.raises(ValueError, match="takes a number"):
    train.config_from_args(train.parse_args(["--workdir", "w", "--set", "epochs=many"]))
  with pytest.raises(ValueError, match="cannot be none"):
    train.config_from_args(train.parse_args(["--workdir", "w", "--set", "epochs=none"]))


def test_patience_stops_when_validation_stops_improving(mrpc_dir, tmp_path):
  config = get_preset("tiny").replace(epochs=4, patience=1, learning_rate=1e-9)
  result = train.train_and_evaluate(config, tmp_path, mrpc_dir, progress=False)
  epochs = (tmp_path / "metrics.jsonl").read_text().splitlines()
  assert len(epochs) == 2 and result["best_epoch"] == 1


@pytest.mark.slow
def test_tensorboard_event_files_when_tensorboardx_is_installed(tiny_run):
  pytest.importorskip("tensorboardX", reason="the tensorboard extra is not installed")
  workdir, _ = tiny_run
  events = list((workdir / "tensorboard").glob("events.out.tfevents.*"))
  assert len(events) == 1
  content = events[0].read_bytes()
  assert b"validation/accuracy" in content and b"train/loss" in content


def test_train_subset_is_a_seeded_share_in_file_order(splits):
  examples = splits["train"]
  subset = train.train_subset(examples, 0.1, seed=0)
  assert len(subset) == 367
  rows = [e.idx for e in subset]
  assert rows == sorted(set(rows))
  assert subset == train.train_subset(examples, 0.1, seed=0)
  assert subset != train.train_subset(examples, 0.1, seed=1)
  assert train.train_subset(examples, 1.0, seed=0) is examples


def test_symmetric_eval_scores_the_mean_of_both_orders(mrpc_dir, tmp_path, splits):
  config = get_preset("tiny").replace(epochs=1, train_fraction=0.1, symmetric_eval=True)
  train.train_and_evaluate(config, tmp_path, mrpc_dir, progress=False)
  trained = load_trained(tmp_path)
  pairs = splits["test"][:40]
  swapped = [dataclasses.replace(e, sentence1=e.sentence2, sentence2=e.sentence1) for e in pairs]
  np.testing.assert_allclose(trained.probabilities(pairs), trained.probabilities(swapped),
                             atol=1e-7)
  one_order = dataclasses.replace(trained, config=config.replace(symmetric_eval=False))
  # This barely trained model is almost constant, yet the order still shows.
  assert np.abs(one_order.probabilities(pairs) - one_order.probabilities(swapped)).max() > 1e-5
  written = np.loadtxt(tmp_path / "test_predictions.tsv", skiprows=1, usecols=2)
  np.testing.assert_allclose(written[:40], trained.probabilities(pairs), atol=1e-5)


def test_a_config_written_with_seed_quirks_still_loads():
  saved = json.loads((ROOT / "experiments" / "results" / "seed_preset_h200" / "results.json")
                     .read_text())["config"]
  assert saved["model"]["seed_quirks"] is True  # the one flag the two seed fields replaced
  assert Config.from_dict(saved) == get_preset("seed")
