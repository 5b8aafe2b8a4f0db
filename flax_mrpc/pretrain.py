"""Pretrain the encoder with masked-language modelling: `python -m flax_mrpc.pretrain`.

    python -m flax_mrpc.pretrain --workdir runs/mlm [--corpus FILE]
    python -m flax_mrpc.train --pretrained runs/mlm --workdir runs/finetuned

BERT's recipe, on this project's own encoder (`modules.MaskedLM`, the head
tied to the word embeddings): a WordPiece vocabulary learned on the corpus
(`corpus`; by default MRPC's train sentences), pairs of consecutive lines
packed into rows of `max_length` tokens, BERT's 15% masking with 80/10/10
(`masking`), and the fine-tuning loop (`loop.run_epochs`): the same optax
optimizer and schedule, orbax checkpoints, exact resume, preemption, and
jit/pmap/mesh over one or several hosts. After each epoch the masked-token
loss and accuracy are measured on MRPC's validation pairs (masked the same
way every time).

The workdir then holds `results.json` ("task": "masked_lm"), `metrics.jsonl`,
`tokenizer/vocab.txt` and `checkpoints/`; `train --pretrained WORKDIR`
fine-tunes its encoder with the default recipe, and `export --workdir
WORKDIR` writes it as a Hugging Face `BertForMaskedLM`.

A fine-tuning config with `pretrain_epochs` above 0 (`train --set
pretrain_epochs=N`) runs this first in its own `workdir/pretrain`, once.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import flax
import jax
import numpy as np
from flax import nnx

from flax_mrpc import cli  # first: it quiets transformers before that is imported
from flax_mrpc import (corpus, data, data_sources, memory, packing, parallel, pretrained_workdir,
                       steps, tokenization)
from flax_mrpc.checkpoint import Checkpointer, CheckpointError, config_differences
from flax_mrpc.config import Config, get_preset, pretraining_config
from flax_mrpc.epochs import MaskedEpochs
from flax_mrpc.loop import EXIT_PREEMPTED, Preempted, Task, held_workdir, log, run_epochs
from flax_mrpc.modules import MaskedLM
from flax_mrpc.optim import make_optimizer

CACHE = "pretrain"  # a fine-tuning workdir's folder for its pretraining
DEFAULT_EPOCHS = 20  # when the preset has no pretraining of its own
OUTPUTS = ("results.json", "metrics.jsonl", "checkpoints", "tokenizer", "tensorboard")


def pretrain(config: Config, workdir: str | Path, data_dir: str | Path | None = None,
             overwrite: bool = False, progress: bool = True,
             checkpoint_every_steps: int | None = None, keep_checkpoints: int = 2,
             data_source: str = "local", parallel_mode: str = "auto") -> dict[str, Any]:
  """Pretrains the encoder of `config` (`config.pretraining_config` of it) in
  `workdir`, resuming from its latest checkpoint if there is one, and returns
  the contents of its `results.json`. The arguments are
  `train.train_and_evaluate`'s; a workdir with a finished pretraining is
  refused unless `overwrite`."""
  workdir = Path(workdir)
  config = pretraining_config(config)
  memory.check_fits(config.model, config.train.batch_size)
  with held_workdir(workdir):
    if (workdir / "results.json").exists() and not overwrite:
      raise FileExistsError(f"{workdir} already holds a finished run (results.json). Pass "
                            "--overwrite to replace it, or choose another --workdir.")
    parallel.barrier("workdir checked")
    if overwrite and parallel.is_main_process():
      _remove_outputs(workdir)
    splits = data_sources.load(data_source, data_dir)
    return _run(config, workdir, splits, progress, checkpoint_every_steps, keep_checkpoints,
                parallel_mode)


def cached_pretraining(config: Config, workdir: Path, splits: dict[str, list[data.Example]],
                       progress: bool, checkpoint_every_steps: int | None,
                       parallel_mode: str) -> None:
  """Pretraining for the fine-tuning run in `workdir` (which this process
  holds), in `workdir/pretrain`: run or resumed there unless it finished with
  this configuration. One finished with another is a CheckpointError."""
  folder = workdir / CACHE
  wanted = pretraining_config(config)
  if (folder / "results.json").exists():
    differences = config_differences(pretrained_workdir.saved_config(folder).to_dict(),
                                     wanted.to_dict())
    if differences:
      raise CheckpointError(f"{folder} holds the pretraining of another configuration:\n  "
                            + "\n  ".join(differences)
                            + "\nPass --overwrite to start afresh, or choose another --workdir.")
    log(f"pretraining: found finished in {folder}")
    return
  if parallel.is_main_process():
    folder.mkdir(exist_ok=True)
  parallel.barrier("pretraining folder")
  _run(wanted, folder, splits, progress, checkpoint_every_steps, 2, parallel_mode)


def _remove_outputs(workdir: Path) -> None:
  for name in OUTPUTS:
    path = workdir / name
    if path.is_dir():
      shutil.rmtree(path)
    else:
      path.unlink(missing_ok=True)


def _corpus_lines(config: Config, splits: dict[str, list[data.Example]]) -> Iterable[str]:
  path = config.pretrain.corpus
  return corpus.CorpusFile(path) if path else corpus.mrpc_lines(splits["train"])


def _tokenizer(config: Config, lines: Iterable[str], workdir: Path):
  """The vocabulary learned on the corpus, or, on a resume, the one learned before."""
  saved = workdir / "tokenizer"
  if (saved / "vocab.txt").is_file():
    return tokenization.load_tokenizer(str(saved), config.train.lowercase)
  if parallel.is_main_process():
    tokenization.train_wordpiece(lines, config.model.vocab_size, config.train.lowercase, saved)
  parallel.barrier("pretraining tokenizer")
  return tokenization.load_tokenizer(str(saved), config.train.lowercase)


def _masked_epochs(features: dict[str, np.ndarray], config: Config, tokenizer,
                   rows_multiple: int) -> MaskedEpochs:
  special = [tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id]
  return MaskedEpochs(features, config.train, rows_multiple, special, tokenizer.mask_token_id,
                      len(tokenizer), config.pretrain.mask_rate)


def heldout_batches(epochs: MaskedEpochs, features: dict[str, np.ndarray],
                    seed: int) -> list[dict[str, np.ndarray]]:
  """The held-out pairs, packed and masked the same way at every evaluation."""
  lengths = features["attention_mask"].sum(axis=1)
  rows = packing.pack_rows(lengths, np.arange(len(lengths)), features["input_ids"].shape[1])
  return [epochs.mask(batch, np.random.default_rng([seed, i, 3])) for i, batch in enumerate(
      packing.packed_batches(features, rows, epochs.rows_per_batch, epochs.rows_multiple))]


def _masked_lm_metrics(runner: parallel.DataParallel, params,
                       batches: list[dict[str, np.ndarray]]) -> dict[str, float]:
  sums = [runner.eval_step(params, batch) for batch in batches]
  total = {k: float(sum(s[k] for s in sums)) for k in ("loss_sum", "correct", "count")}
  return {"loss": total["loss_sum"] / total["count"],
          "accuracy": total["correct"] / total["count"]}


def _run(config: Config, workdir: Path, splits: dict[str, list[data.Example]], progress: bool,
         checkpoint_every_steps: int | None, keep_checkpoints: int,
         parallel_mode: str) -> dict[str, Any]:
  """Pretraining with `config` (a `pretraining_config`) in a held `workdir`."""
  start = time.time()
  tc, mc = config.train, config.model
  lines = _corpus_lines(config, splits)
  tokenizer = _tokenizer(config, lines, workdir)
  features = corpus.encode_corpus(tokenizer, lines, mc.max_length)
  heldout = tokenization.encode_pairs(tokenizer, splits["validation"], mc.max_length).features()
  log(f"pretraining corpus: {len(features['input_ids'])} pairs of lines "
      f"({config.pretrain.corpus or 'MRPC train sentences'}); held out: "
      f"{len(heldout['input_ids'])} MRPC validation pairs")

  graphdef, params = nnx.split(MaskedLM(mc, rngs=nnx.Rngs(params=tc.seed)))
  epochs = _masked_epochs(features, config, tokenizer, parallel.device_count(parallel_mode))
  tx = make_optimizer(tc, epochs.total_steps)
  runner = parallel.DataParallel(parallel_mode, graphdef, tx, steps.MaskedLMLoss(),
                                 evaluate=steps.masked_lm_eval_step)
  heldout_masked = heldout_batches(epochs, heldout, tc.seed)
  log(f"masked LM: {steps.param_count(params):,} parameters; {epochs.describe()}; "
      f"parallel: {runner.mode} over {runner.num_devices} device(s)")

  task = Task(
      name="pretrain ", epochs=epochs, runner=runner, rng=jax.random.key(tc.seed + 1),
      evaluate=lambda state: {"heldout": _masked_lm_metrics(
          runner, runner.put_params(state.params), heldout_masked)},
      score=lambda metrics: -metrics["heldout"]["loss"],
      summary=lambda metrics: (f"held-out masked-token loss {metrics['heldout']['loss']:.4f} "
                               f"accuracy {metrics['heldout']['accuracy']:.4f}"))
  checkpointer = Checkpointer(workdir / "checkpoints", keep_checkpoints)
  try:
    loop, _ = run_epochs(task, steps.TrainState.create(params, tx), config, workdir,
                         checkpointer, progress, checkpoint_every_steps)
  finally:
    checkpointer.close()
  results = {
      "task": pretrained_workdir.TASK,
      "config": config.to_dict(),
      "steps": epochs.total_steps,
      "corpus_pairs": len(features["input_ids"]),
      "heldout": loop["history"][-1]["heldout"],
      "num_parameters": steps.param_count(params),
      "tokenizer_vocab_size": len(tokenizer),
      "wall_time_s": time.time() - start,
      "device": str(jax.devices()[0].device_kind),
      "host_cpus": os.cpu_count(),
      "versions": {"jax": jax.__version__, "flax": flax.__version__},
  }
  if parallel.is_main_process():
    (workdir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
  log(f"pretraining done: {results['steps']} steps, held-out masked-token accuracy "
      f"{results['heldout']['accuracy']:.4f}; {results['wall_time_s']:.0f} s")
  return results


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog="python -m flax_mrpc.pretrain",
      usage="%(prog)s --workdir DIR [--corpus FILE] [options]",
      formatter_class=argparse.RawDescriptionHelpFormatter,
      description="Pretrain the encoder with masked-language modelling (BERT's 15% masking, "
                  "80/10/10)\non a text corpus, one sentence or document per line (default: "
                  "MRPC's train sentences).\nRerun the same command to resume a stopped run.",
      epilog="then: python -m flax_mrpc.train --pretrained DIR --workdir DIR2\n"
             "  or: python -m flax_mrpc.export --workdir DIR --output HF_DIR")
  common = parser.add_argument_group("common options")
  common.add_argument("--workdir", required=True, metavar="DIR",
                      help="folder for checkpoints, metrics, the tokenizer and results.json")
  common.add_argument("--corpus", metavar="FILE",
                      help="UTF-8 text, one sentence or document per line; consecutive lines "
                           "make the pairs (default: MRPC's train sentences)")
  common.add_argument("--preset", default="default", metavar="NAME",
                      help="the model and optimizer settings (default: %(default)s)")
  common.add_argument("--epochs", type=int, metavar="N", help="passes over the corpus (default: the preset's pretrain_epochs, else "
                           f"{DEFAULT_EPOCHS})")
  common.add_argument("--batch-size", type=int, metavar="N", help="pairs of lines per step")
  common.add_argument("--learning-rate", type=float, metavar="LR", help="peak learning rate")
  common.add_argument("--seed", type=int, metavar="N", help="random seed")
  common.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                      help="change any field of flax_mrpc/config.py, e.g. --set d_model=256 "
                           "(repeatable)")
  common.add_argument("--data-dir", default=None, metavar="DIR",
                      help="folder with the MRPC files (validation pairs are held out)")
  common.add_argument("--data-source", default="local", choices=data_sources.SOURCES,
                      help="reader of the MRPC files (default: %(default)s)")
  common.add_argument("--overwrite", action="store_true",
                      help="start afresh: remove the outputs and checkpoints in --workdir")
  cli.add_run_arguments(parser)
  return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> Config:
  """The preset with the flags applied; pretraining's own fields take the
  short flags (--epochs is pretrain_epochs, at least 1)."""
  changes = {field: getattr(args, flag) for flag, field in (
      ("epochs", "pretrain_epochs"), ("batch_size", "pretrain_batch_size"),
      ("learning_rate", "pretrain_learning_rate"), ("corpus", "corpus"), ("seed", "seed"))
      if getattr(args, flag) is not None}
  changes.update(cli.parse_set(args.set))
  config = get_preset(args.preset).replace(**changes)
  if config.pretrain.pretrain_epochs < 1:
    config = config.replace(pretrain_epochs=DEFAULT_EPOCHS)
  return config


def main(argv: Sequence[str] | None = None) -> int:
  args = parse_args(argv)
  try:
    config = config_from_args(args)
    cli.start_run(args)
    pretrain(config, args.workdir, args.data_dir, args.overwrite, progress=not args.no_progress,
             checkpoint_every_steps=args.checkpoint_every_steps,
             keep_checkpoints=args.keep_checkpoints, data_source=args.data_source,
             parallel_mode=args.parallel)
  except Preempted as e:
    print(str(e), file=sys.stderr)
    return EXIT_PREEMPTED
  except (ValueError, FileExistsError) as e:
    return cli.report(e)
  return 0


if __name__ == "__main__":
  sys.exit(main())
