"""Train and evaluate the pair classifier on MRPC: `python -m flax_mrpc.train`.

    python -m flax_mrpc.train --preset default --workdir runs/default

The loop (`train_and_evaluate`) is importable. It trains for `epochs` (or
until `patience` epochs pass without a better validation score), evaluates
the validation split after each one, keeps the parameters of the best
validation epoch, scores the test split once with them, and writes to the
workdir: `results.json`, `metrics.jsonl` (one object per epoch),
`test_predictions.tsv` and the tokenizer's `tokenizer/vocab.txt`.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import flax
import jax
import numpy as np
from flax import nnx
from tqdm import tqdm

from flax_mrpc import batching, data, steps, tokenization
from flax_mrpc.config import PRESETS, Config, ModelConfig, TrainConfig, get_preset
from flax_mrpc.metrics import classification_metrics
from flax_mrpc.modules import PairClassifier
from flax_mrpc.optim import make_optimizer

OUTPUT_FILES = ("results.json", "metrics.jsonl", "test_predictions.tsv")


def _log(message: str) -> None:
  print(message, file=sys.stderr, flush=True)


def prepare_workdir(workdir: Path, overwrite: bool) -> None:
  """Creates `workdir`; refuses one that holds an earlier run's outputs unless
  `overwrite`, which removes them."""
  workdir.mkdir(parents=True, exist_ok=True)
  existing = [name for name in OUTPUT_FILES if (workdir / name).exists()]
  if existing and not overwrite:
    raise FileExistsError(
        f"{workdir} already holds a run ({', '.join(existing)}). "
        "Pass --overwrite to replace it, or choose another --workdir."
    )
  for name in existing:
    (workdir / name).unlink()


def build_tokenizer(config: Config, splits: dict[str, list[data.Example]], workdir: Path):
  """The run's tokenizer, saved as `workdir/tokenizer/vocab.txt` when learned."""
  if config.train.tokenizer == "train":
    sentences = [s for e in splits["train"] for s in (e.sentence1, e.sentence2)]
    return tokenization.train_wordpiece(
        sentences, config.model.vocab_size, config.train.lowercase, workdir / "tokenizer"
    )
  tokenizer = tokenization.load_tokenizer(config.train.tokenizer, config.train.lowercase)
  if len(tokenizer) > config.model.vocab_size:
    raise ValueError(
        f"tokenizer {config.train.tokenizer!r} has {len(tokenizer)} tokens but the model's "
        f"vocab_size is {config.model.vocab_size}; pass --set vocab_size={len(tokenizer)}."
    )
  return tokenizer


def predict_probabilities(
    eval_fn, params: nnx.State, split: tokenization.EncodedSplit, batch_size: int
) -> np.ndarray:
  """[n] paraphrase probabilities of a split, in its order."""
  out = [np.asarray(eval_fn(params, batch))
         for batch in batching.batches(split.features(), batch_size)]
  return np.concatenate(out)[: len(split)]


def _evaluate(probabilities: np.ndarray, split: tokenization.EncodedSplit) -> dict[str, float]:
  return classification_metrics(split.labels, probabilities >= 0.5)


def _is_better(candidate: dict[str, float], best: dict[str, float] | None) -> bool:
  """GLUE's MRPC score, (accuracy + F1) / 2, decides; the earlier epoch wins a tie."""
  if best is None:
    return True
  return candidate["accuracy"] + candidate["f1"] > best["accuracy"] + best["f1"]


def train_and_evaluate(
    config: Config,
    workdir: str | Path,
    data_dir: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
  """Runs one training job and writes its outputs to `workdir`; returns the
  contents of `results.json`."""
  start = time.time()
  workdir = Path(workdir)
  prepare_workdir(workdir, overwrite)
  tc, mc = config.train, config.model

  splits = data.load_splits(data.find_data_dir(data_dir))
  tokenizer = build_tokenizer(config, splits, workdir)
  encoded = {name: tokenization.encode_pairs(tokenizer, examples, mc.max_length)
             for name, examples in splits.items()}
  truncated = {name: split.num_truncated for name, split in encoded.items()}
  _log(f"pairs: { {k: len(v) for k, v in encoded.items()} }; longer than max_length "
       f"{mc.max_length} (truncated): {truncated}")

  train_features = encoded["train"].features()
  if tc.swap_augment:
    swapped = tokenization.encode_pairs(tokenizer, splits["train"], mc.max_length, swap=True)
    train_features = {k: np.concatenate([v, swapped.features()[k]])
                      for k, v in train_features.items()}
  num_train = len(train_features["labels"])
  steps_per_epoch = batching.num_batches(num_train, tc.batch_size)

  model = PairClassifier(mc, rngs=nnx.Rngs(params=tc.seed))
  graphdef, params = nnx.split(model)
  tx = make_optimizer(tc, steps_per_epoch * tc.epochs)
  state = steps.TrainState.create(params, tx)
  train_fn = jax.jit(
      functools.partial(steps.train_step, graphdef=graphdef, tx=tx, pos_weight=tc.pos_weight),
      donate_argnums=0,
  )
  eval_fn = jax.jit(functools.partial(steps.eval_step, graphdef=graphdef))
  dropout_rng = jax.random.key(tc.seed + 1)
  _log(f"model: {steps.param_count(params):,} parameters; {steps_per_epoch} steps per epoch")

  best, best_params, best_epoch = None, None, 0
  with open(workdir / "metrics.jsonl", "w") as metrics_file:
    for epoch in range(1, tc.epochs + 1):
      epoch_start = time.time()
      order = batching.epoch_order(num_train, tc.seed, epoch)
      loss_sum = count = 0.0  # summed on the device; read back every 20 steps
      bar = tqdm(batching.batches(train_features, tc.batch_size, order), total=steps_per_epoch,
                 desc=f"epoch {epoch}/{tc.epochs}", disable=not progress, leave=False)
      for i, batch in enumerate(bar):
        state, step_metrics = train_fn(state, batch, dropout_rng)
        loss_sum += step_metrics["loss_sum"]
        count += step_metrics["count"]
        if progress and i % 20 == 0:
          bar.set_postfix(loss=f"{float(loss_sum / count):.4f}")
      loss_sum, count = float(loss_sum), float(count)
      validation = _evaluate(
          predict_probabilities(eval_fn, state.params, encoded["validation"], tc.batch_size),
          encoded["validation"],
      )
      record = {"epoch": epoch, "step": int(state.step), "train_loss": loss_sum / count,
                "validation": validation, "epoch_time_s": time.time() - epoch_start}
      metrics_file.write(json.dumps(record) + "\n")
      metrics_file.flush()
      _log(f"epoch {epoch}: train loss {record['train_loss']:.4f}, validation accuracy "
           f"{validation['accuracy']:.4f} F1 {validation['f1']:.4f}")
      if _is_better(validation, best):
        best, best_epoch = validation, epoch
        best_params = jax.device_get(state.params)
      elif tc.patience is not None and epoch - best_epoch >= tc.patience:
        _log(f"early stop: no better validation score for {tc.patience} epochs")
        break

  test_probabilities = predict_probabilities(eval_fn, best_params, encoded["test"], tc.batch_size)
  test_predictions = (test_probabilities >= 0.5).astype(int)
  with open(workdir / "test_predictions.tsv", "w") as f:
    f.write("idx\tprediction\tprobability\n")
    for i, p, q in zip(encoded["test"].idx, test_predictions, test_probabilities):
      f.write(f"{i}\t{p}\t{q:.6f}\n")
  test_labelled = bool(np.all(encoded["test"].labels >= 0))
  results = {
      "config": config.to_dict(),
      "best_epoch": best_epoch,
      "validation": best,
      "test": _evaluate(test_probabilities, encoded["test"]) if test_labelled else None,
      "num_parameters": steps.param_count(params),
      "num_truncated": truncated,
      "tokenizer_vocab_size": len(tokenizer),
      "wall_time_s": time.time() - start,
      "device": str(jax.devices()[0].device_kind),
      "versions": {"jax": jax.__version__, "flax": flax.__version__},
  }
  (workdir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
  if results["test"] is None:
    _log("the test split has no labels: test metrics skipped, predictions written")
  else:
    _log(f"best epoch {best_epoch}; test accuracy {results['test']['accuracy']:.4f} "
         f"F1 {results['test']['f1']:.4f}; {results['wall_time_s']:.0f} s")
  return results


def _parse_set(assignments: Sequence[str]) -> dict[str, Any]:
  """Parses `--set name=value` pairs, converting each value to its field's type."""
  fields = {f.name: f for cls in (ModelConfig, TrainConfig) for f in dataclasses.fields(cls)}
  changes = {}
  for item in assignments:
    name, sep, raw = item.partition("=")
    if not sep or name not in fields:
      raise ValueError(f"--set {item!r}: expected NAME=VALUE with NAME one of {sorted(fields)}.")
    default = fields[name].default
    if raw.lower() == "none":
      value = None
    elif isinstance(default, bool):
      if raw.lower() not in ("true", "false", "1", "0"):
        raise ValueError(f"--set {item!r}: {name} takes true or false.")
      value = raw.lower() in ("true", "1")
    elif isinstance(default, int):
      value = int(raw)
    elif isinstance(default, float) or name == "pos_weight":
      value = float(raw)
    else:
      value = raw
    changes[name] = value
  return changes


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog="python -m flax_mrpc.train",
      description="Train a BERT-style paraphrase classifier on GLUE MRPC.",
  )
  parser.add_argument("--preset", default="default", choices=sorted(PRESETS),
                      help="starting configuration (default: %(default)s)")
  parser.add_argument("--workdir", required=True, help="folder for results and the tokenizer")
  parser.add_argument("--data-dir", default=None,
                      help="folder with the MRPC files (default: $FLAX_MRPC_DATA_DIR, "
                           "else download into the user cache)")
  parser.add_argument("--seed", type=int, help="random seed (init, dropout, shuffling)")
  parser.add_argument("--epochs", type=int)
  parser.add_argument("--batch-size", type=int)
  parser.add_argument("--learning-rate", type=float)
  parser.add_argument("--tokenizer", help="'train', a folder with vocab.txt, or a hub name")
  parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                      help="change any config field, e.g. --set d_model=256 (repeatable)")
  parser.add_argument("--overwrite", action="store_true",
                      help="replace the outputs of an earlier run in --workdir")
  parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
  return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> Config:
  changes = {name: getattr(args, name)
             for name in ("seed", "epochs", "batch_size", "learning_rate", "tokenizer")
             if getattr(args, name) is not None}
  changes.update(_parse_set(args.set))
  return get_preset(args.preset).replace(**changes)


def main(argv: Sequence[str] | None = None) -> int:
  args = parse_args(argv)
  try:
    config = config_from_args(args)
    train_and_evaluate(config, args.workdir, args.data_dir, args.overwrite,
                       progress=not args.no_progress)
  except (data.DataError, ValueError, FileExistsError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
