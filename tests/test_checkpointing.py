"""Resume, preemption, damaged checkpoints, config checks, predict and evaluate."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

from flax_mrpc import evaluate, predict, train
from flax_mrpc.config import get_preset
from flax_mrpc.data import mrpc
from flax_mrpc.inference import load_trained
from flax_mrpc.modules import PairClassifier
from flax_mrpc.training.checkpoint import Checkpointer, CheckpointError
from flax_mrpc.training.optimizer import make_optimizer
from flax_mrpc.training.steps import TrainState

from conftest import UNOPTIMISED

ROOT = Path(__file__).resolve().parents[1]
RUN = ["--preset", "tiny", "--epochs", "2", "--set", "train_fraction=0.5", "--no-progress",
       "--checkpoint-every-steps", "20"]


# SIGTERM to exit: the step running and the one queued behind it (milliseconds
# for the tiny preset), one checkpoint save (under a second here) and the
# interpreter's exit; the rest is slack for a loaded 2-core machine.
SIGTERM_EXIT_BOUND_S = 15


def _start(workdir, mrpc_dir, module="train", args=RUN, optimised=False):
  """The command in a subprocess; `optimised` compiles with LLVM's
  optimisations, which conftest turns off, for a run of many steps."""
  env = {**os.environ, "PYTHONPATH": str(ROOT), "FLAX_MRPC_DATA_DIR": str(mrpc_dir)}
  if optimised:
    env["XLA_FLAGS"] = " ".join(flag for flag in env.get("XLA_FLAGS", "").split()
                                if flag != UNOPTIMISED)
    if not env["XLA_FLAGS"]:
      del env["XLA_FLAGS"]  # XLA reads an empty or blank value as a file name
  return subprocess.Popen([sys.executable, "-m", f"flax_mrpc.{module}", *args, "--workdir",
                           str(workdir)], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def _committed(workdir):
  folder = workdir / "checkpoints"
  return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []


def _wait_for_checkpoints(proc, workdir, n, timeout=300):
  deadline = time.time() + timeout
  while len(_committed(workdir)) < n:
    assert proc.poll() is None, proc.communicate()[1]
    assert time.time() < deadline, "no checkpoint in time"
    time.sleep(0.05)


def _best_params(workdir):
  return [np.asarray(x) for x in jax.tree.leaves(load_trained(workdir).params)]


def _epochs(workdir):
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  for r in records:
    del r["epoch_time_s"]
  return records


@pytest.fixture(scope="module")
def reference(mrpc_dir, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("reference")
  proc = _start(workdir, mrpc_dir)
  _, err = proc.communicate(timeout=600)
  assert proc.returncode == 0, err
  return workdir


def _assert_same_run(workdir, reference):
  assert ((workdir / "test_predictions.tsv").read_text()
          == (reference / "test_predictions.tsv").read_text())
  assert _epochs(workdir) == _epochs(reference)
  a, b = json.loads((workdir / "results.json").read_text()), json.loads(
      (reference / "results.json").read_text())
  assert (a["best_epoch"], a["validation"], a["test"]) == (b["best_epoch"], b["validation"],
                                                           b["test"])
  for x, y in zip(_best_params(workdir), _best_params(reference)):
    np.testing.assert_array_equal(x, y)


@pytest.mark.slow
def test_kill_9_then_rerun_equals_an_uninterrupted_run(reference, mrpc_dir, tmp_path):
  proc = _start(tmp_path, mrpc_dir)
  _wait_for_checkpoints(proc, tmp_path, 2)
  proc.kill()
  proc.wait()
  assert not (tmp_path / "results.json").exists()
  assert (tmp_path / "train.lock").read_text().startswith(f"pid {proc.pid} ")  # left behind
  resumed = _start(tmp_path, mrpc_dir)
  _, err = resumed.communicate(timeout=600)
  assert resumed.returncode == 0, err
  assert "resuming from the checkpoint at step" in err
  _assert_same_run(tmp_path, reference)


PACKED_RUN = [*RUN, "--set", "pack=true", "--set", "max_length=128"]


@pytest.fixture(scope="module")
def packed_reference(mrpc_dir, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("packed_reference")
  proc = _start(workdir, mrpc_dir, args=PACKED_RUN)
  _, err = proc.communicate(timeout=600)
  assert proc.returncode == 0, err
  assert "packed:" in err
  return workdir


@pytest.mark.slow
def test_a_killed_packed_run_resumes_exactly(packed_reference, mrpc_dir, tmp_path):
  proc = _start(tmp_path, mrpc_dir, args=PACKED_RUN)
  _wait_for_checkpoints(proc, tmp_path, 2)
  proc.kill()
  proc.wait()
  resumed = _start(tmp_path, mrpc_dir, args=PACKED_RUN)
  _, err = resumed.communicate(timeout=600)
  assert resumed.returncode == 0, err
  assert "resuming from the checkpoint at step" in err
  _assert_same_run(tmp_path, packed_reference)


@pytest.mark.slow
def test_sigterm_saves_and_exits_75_then_resumes_exactly(reference, mrpc_dir, tmp_path):
  proc = _start(tmp_path, mrpc_dir)
  _wait_for_checkpoints(proc, tmp_path, 1)
  signalled = time.monotonic()
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=300)
  assert time.monotonic() - signalled < SIGTERM_EXIT_BOUND_S
  assert proc.returncode == train.EXIT_PREEMPTED, err
  assert "Rerun the same command to resume" in err
  saved = _committed(tmp_path)
  resumed = _start(tmp_path, mrpc_dir)
  _, err = resumed.communicate(timeout=600)
  assert resumed.returncode == 0, err
  assert f"resuming from the checkpoint at step {saved[-1]}" in err
  assert "encoded splits: reused train, validation, test from the cache" in err
  _assert_same_run(tmp_path, reference)


@pytest.mark.slow
def test_a_second_run_on_a_busy_workdir_is_refused_while_readers_may_read(mrpc_dir, tmp_path):
  first = _start(tmp_path, mrpc_dir, args=["--preset", "tiny", "--epochs", "40", "--no-progress"],
                 optimised=True)
  _wait_for_checkpoints(first, tmp_path, 1)
  second = _start(tmp_path, mrpc_dir)
  reader = _start(tmp_path, mrpc_dir, "predict", ["--pair", "He left.", "He went away."])
  _, second_err = second.communicate(timeout=300)
  scored, reader_err = reader.communicate(timeout=300)
  assert first.poll() is None, "the first run ended before the second was refused"
  assert second.returncode == 2
  assert second_err == (f"error: {tmp_path} is in use by a training run (pid {first.pid} on "
                        f"host {socket.gethostname()}). Wait for it to end, stop it, or choose "
                        "another --workdir.\n")
  assert reader.returncode == 0, reader_err
  assert scored.endswith("\tHe left.\tHe went away.\n")
  _, err = first.communicate(timeout=600)
  assert first.returncode == 0, err
  assert len(_epochs(tmp_path)) == 40 and (tmp_path / "results.json").is_file()


@pytest.mark.slow
def test_best_epoch_is_chosen_on_validation_only(reference):
  epochs = _epochs(reference)
  scores = [(e["validation"]["accuracy"] + e["validation"]["f1"]) / 2 for e in epochs]
  results = json.loads((reference / "results.json").read_text())
  assert results["best_epoch"] == 1 + int(np.argmax(scores))
  assert results["validation"] == epochs[results["best_epoch"] - 1]["validation"]


@pytest.mark.slow
def test_evaluate_and_predict_reproduce_the_run(reference, mrpc_dir, tmp_path, monkeypatch,
                                                capsys):
  monkeypatch.setenv("FLAX_MRPC_DATA_DIR", str(mrpc_dir))
  assert evaluate.main(["--workdir", str(reference), "--split", "test"]) == 0
  metrics = json.loads(capsys.readouterr().out)
  results = json.loads((reference / "results.json").read_text())
  assert {k: metrics[k] for k in results["test"]} == results["test"]

  test = mrpc.load_splits(mrpc_dir)["test"][:50]
  pairs = tmp_path / "pairs.tsv"
  pairs.write_text("sentence1\tsentence2\n" + "".join(
      f"{e.sentence1}\t{e.sentence2}\n" for e in test))
  out = tmp_path / "scored.tsv"
  assert predict.main(["--workdir", str(reference), "--input", str(pairs),
                       "--output", str(out)]) == 0
  scored = [line.split("\t") for line in out.read_text().splitlines()]
  expected = [line.split("\t") for line in
              (reference / "test_predictions.tsv").read_text().splitlines()[1:51]]
  assert [s[0] for s in scored] == [e[1] for e in expected]  # the label: 1 is a paraphrase
  for s, e in zip(scored, expected):  # and its probability
    paraphrase = float(e[2])
    assert float(s[1]) == pytest.approx(paraphrase if e[1] == "1" else 1 - paraphrase, abs=2e-6)

  assert predict.main(["--workdir", str(reference), "--glue-submission",
                       "--output", str(tmp_path)]) == 0  # a folder
  lines = (tmp_path / "MRPC.tsv").read_text().splitlines()
  assert lines[0] == "index\tprediction" and len(lines) == 1726


def test_a_mismatched_config_is_refused(mrpc_dir, tmp_path):
  config = get_preset("tiny").replace(epochs=1, train_fraction=0.1)
  train.train_and_evaluate(config, tmp_path, mrpc_dir, progress=False)
  with pytest.raises(FileExistsError, match="--overwrite"):
    train.train_and_evaluate(config, tmp_path, mrpc_dir, progress=False)
  (tmp_path / "results.json").unlink()  # as if killed before the end
  with pytest.raises(CheckpointError, match=r"(?s)train\.epochs: 1 -> 2.*--overwrite"):
    train.train_and_evaluate(config.replace(epochs=2), tmp_path, mrpc_dir, progress=False)


def _small_state(value):
  config = get_preset("tiny")
  _, params = nnx.split(PairClassifier(config.model, rngs=nnx.Rngs(0)))
  tx = make_optimizer(config.train, 10)
  state = TrainState.create(params, tx)
  return state.replace(step=state.step + value)


def test_a_damaged_latest_checkpoint_falls_back_to_the_previous(tmp_path, capsys):
  checkpointer = Checkpointer(tmp_path, keep_last=3)
  for step in (1, 2):
    checkpointer.save(_small_state(step), {"position": step})
  checkpointer.close()
  for f in (tmp_path / "2" / "state").rglob("*"):
    if f.is_file():
      f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2])
  (tmp_path / "3.orbax-checkpoint-tmp-1234" / "state").mkdir(parents=True)  # a cut-short save
  checkpointer = Checkpointer(tmp_path, keep_last=3)
  restored = checkpointer.restore_latest(_small_state(0))
  checkpointer.close()
  assert restored.step == 1 and restored.meta == {"position": 1}
  err = capsys.readouterr().err
  assert "checkpoint 2" in err and "3.orbax-checkpoint-tmp-1234 is an incomplete checkpoint" in err
  assert sorted(p.name for p in tmp_path.iterdir()) == [
      "1", "2", "3.orbax-checkpoint-tmp-1234"]  # nothing deleted


def test_a_resumed_run_keeps_the_best_checkpoint_of_the_earlier_process(tmp_path):
  checkpointer = Checkpointer(tmp_path)
  checkpointer.save(_small_state(20), {})
  checkpointer.save(_small_state(29), {}, score=0.9)  # an epoch end: the best
  checkpointer.close()
  checkpointer = Checkpointer(tmp_path)  # the run resumes in a new process
  checkpointer.save(_small_state(40), {})
  checkpointer.save(_small_state(58), {}, score=0.5)
  checkpointer.wait()
  assert checkpointer.steps() == [29, 40, 58]
  checkpointer.close()


def test_a_non_finite_loss_stops_with_a_message(mrpc_dir, tmp_path):
  config = get_preset("tiny").replace(epochs=1, learning_rate=1e30, clip_norm=None,
                                      warmup_fraction=0.0, schedule="constant",
                                      train_fraction=0.1)
  with pytest.raises(train.NonFiniteLoss, match="--learning-rate"):
    train.train_and_evaluate(config, tmp_path, mrpc_dir, progress=False)
  assert not (tmp_path / "results.json").exists()


def test_saved_meta_is_a_snapshot(tmp_path):
  checkpointer = Checkpointer(tmp_path)
  meta = {"batch": 1}
  checkpointer.save(_small_state(1), meta)
  meta["batch"] = 2  # the loop goes on while the save runs in the background
  checkpointer.wait()
  assert checkpointer.restore(1, _small_state(0)).meta == {"batch": 1}
  checkpointer.close()


def test_a_resumed_run_reads_its_saved_vocabulary(mrpc_dir, tmp_path):
  config = get_preset("tiny").replace(epochs=1, train_fraction=0.1)
  train.train_and_evaluate(config, tmp_path, mrpc_dir, progress=False)
  vocab = tmp_path / "tokenizer" / "vocab.txt"
  tokens = vocab.read_text().splitlines()
  vocab.write_text("\n".join(tokens[:-1] + ["qqqzzz"]) + "\n")  # learning again drops it
  (tmp_path / "results.json").unlink()  # the run is resumed from its last checkpoint
  result = train.train_and_evaluate(config, tmp_path, mrpc_dir, progress=False)
  assert vocab.read_text().splitlines()[-1] == "qqqzzz"
  assert result["tokenizer_vocab_size"] == len(tokens)
  train.train_and_evaluate(config, tmp_path, mrpc_dir, overwrite=True, progress=False)
  assert "qqqzzz" not in vocab.read_text().splitlines()  # --overwrite learns it afresh


def test_predict_on_a_damaged_checkpoint_names_it_and_the_fix(mrpc_dir, tmp_path, capsys):
  workdir = tmp_path / "run"
  assert train.main(["--preset", "tiny", "--epochs", "1", "--set", "train_fraction=0.1",
                     "--no-progress", "--data-dir", str(mrpc_dir), "--workdir",
                     str(workdir)]) == 0
  (checkpoint,) = (workdir / "checkpoints").iterdir()
  for f in (checkpoint / "meta").rglob("*"):
    if f.is_file():
      f.write_text("")
  capsys.readouterr()
  assert predict.main(["--workdir", str(workdir), "--pair", "He left.", "He went away."]) == 2
  (line,) = capsys.readouterr().err.splitlines()  # no absl or orbax lines
  assert line.startswith(f"error: {checkpoint}: this checkpoint is damaged") and (
      "Delete that folder, then rerun the training command" in line)
