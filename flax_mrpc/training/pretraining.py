"""Masked-language-model pretraining of the encoder, the library half of
`python -m flax_mrpc.pretrain` (which documents the recipe).

`pretrain` runs it in a workdir of its own; `cached_pretraining` runs it
once inside a fine-tuning workdir (`WORKDIR/pretrain`), for a config with
`pretrain_epochs` above 0. Either way the workdir ends as
`pretrained_encoder` reads it: `results.json` with `"task": "masked_lm"`,
`tokenizer/vocab.txt` and `checkpoints/`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterable

import jax
import numpy as np
from flax import nnx

from flax_mrpc.config import Config, pretraining_config
from flax_mrpc.data import corpus, packing, tasks, tokenization
from flax_mrpc.data.epochs import MaskedEpochs
from flax_mrpc.data.examples import Example
from flax_mrpc.modules import MaskedLM
from flax_mrpc.training import memory, parallel, pretrained_encoder, steps
from flax_mrpc.training.checkpoint import Checkpointer, CheckpointError, config_differences
from flax_mrpc.training.loop import Task, log, run_epochs
from flax_mrpc.training.optimizer import make_optimizer
from flax_mrpc.training.workdir import RESULTS_FILE, clear_finished_run, held_workdir, write_results

CACHE = "pretrain"  # a fine-tuning workdir's folder for its pretraining
# What --overwrite removes from a pretraining workdir.
OUTPUTS = (RESULTS_FILE, "metrics.jsonl", "checkpoints", "tokenizer", "tensorboard")


def pretrain(config: Config, workdir: str | Path, data_dir: str | Path | None = None,
             overwrite: bool = False, progress: bool = True,
             checkpoint_every_steps: int | None = None, keep_checkpoints: int = 2,
             data_source: str = "local", parallel_mode: str = "auto") -> dict[str, Any]:
  """Pretrains the encoder of `config` (`config.pretraining_config` of it) in
  `workdir`, resuming from its latest checkpoint if there is one, and returns
  the contents of its `results.json`. The arguments are
  `flax_mrpc.train.train_and_evaluate`'s; a workdir with a finished
  pretraining is refused unless `overwrite`."""
  workdir = Path(workdir)
  config = pretraining_config(config)
  with held_workdir(workdir):
    clear_finished_run(workdir, overwrite, OUTPUTS)
    splits = tasks.load(config.task, data_source, data_dir)
    return _run(config, workdir, splits, progress, checkpoint_every_steps, keep_checkpoints,
                parallel_mode)


def cached_pretraining(config: Config, workdir: Path, splits: dict[str, list[Example]],
                       progress: bool, checkpoint_every_steps: int | None,
                       parallel_mode: str) -> None:
  """Pretraining for the fine-tuning run in `workdir` (which this process
  holds), in `workdir/pretrain`: run or resumed there unless it finished with
  this configuration. One finished with another is a CheckpointError."""
  folder = workdir / CACHE
  wanted = pretraining_config(config)
  if (folder / RESULTS_FILE).exists():
    differences = config_differences(pretrained_encoder.saved_config(folder).to_dict(),
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


def _corpus_lines(config: Config, splits: dict[str, list[Example]]) -> Iterable[str]:
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


def _run(config: Config, workdir: Path, splits: dict[str, list[Example]], progress: bool,
         checkpoint_every_steps: int | None, keep_checkpoints: int,
         parallel_mode: str) -> dict[str, Any]:
  """Pretraining with `config` (a `pretraining_config`) in a held `workdir`."""
  start = time.time()
  tc, mc = config.train, config.model
  lines = _corpus_lines(config, splits)
  tokenizer = _tokenizer(config, lines, workdir)
  features = corpus.encode_corpus(tokenizer, lines, mc.max_length, mc.match_embedding)
  [heldout] = tokenization.encode_in_memory(tokenizer, splits["validation"], mc.max_length,
                                            with_match_ids=mc.match_embedding)
  heldout = heldout.features()
  log(f"pretraining corpus: {len(features['input_ids'])} pairs of lines "
      f"({config.pretrain.corpus or 'MRPC train sentences'}); held out: "
      f"{len(heldout['input_ids'])} MRPC validation pairs")

  epochs = _masked_epochs(features, config, tokenizer,
                          parallel.device_count(parallel_mode) * tc.accumulate_steps)
  tx = make_optimizer(tc, epochs.total_steps)
  graphdef, state = memory.abstract_train_state(mc, tx, MaskedLM)
  make_runner = lambda mode: parallel.DataParallel(
      mode, graphdef, tx, steps.MaskedLMLoss(), evaluate=steps.masked_lm_eval_step,
      accumulate_steps=tc.accumulate_steps)
  runner, need = memory.checked_runner(config, parallel_mode, make_runner, state,
                                       next(iter(epochs.batches(1))))
  log(f"memory: {need.describe()} to pretrain")
  parallel_mode = runner.mode
  with parallel.initialisation_device(parallel_mode):
    params = nnx.state(MaskedLM(mc, rngs=nnx.Rngs(params=tc.seed)))
  heldout_masked = heldout_batches(epochs, heldout, tc.seed)
  log(f"masked LM: {steps.param_count(params):,} parameters; {epochs.describe()}; "
      f"parallel: {runner.mode} over {runner.num_devices} device(s)")

  task = Task(
      name="pretrain ", epochs=epochs, runner=runner, rng=jax.random.key(tc.seed + 1),
      epoch_metrics=lambda state: {"heldout": _masked_lm_metrics(
          runner, runner.put_params(state.params), heldout_masked)},
      score=lambda metrics: -metrics["heldout"]["loss"],
      summary=lambda metrics: (f"held-out masked-token loss {metrics['heldout']['loss']:.4f} "
                               f"accuracy {metrics['heldout']['accuracy']:.4f}"))
  checkpointer = Checkpointer(workdir / "checkpoints", keep_checkpoints)
  try:
    with parallel.initialisation_device(parallel_mode):
      state = steps.TrainState.create(params, tx)
    loop, _ = run_epochs(task, state, config, workdir, checkpointer, progress,
                         checkpoint_every_steps)
  finally:
    checkpointer.close()
  results = write_results(workdir, {
      "task": pretrained_encoder.TASK,
      "config": config.to_dict(),
      "steps": epochs.total_steps,
      "corpus_pairs": len(features["input_ids"]),
      "heldout": loop.history[-1]["heldout"],
      "num_parameters": steps.param_count(params),
      "tokenizer_vocab_size": len(tokenizer),
      "memory": need.record() | {"device_peak_gib": memory.device_peak_gib()},
      "wall_time_s": time.time() - start,
  })
  log(f"pretraining done: {results['steps']} steps, held-out masked-token accuracy "
      f"{results['heldout']['accuracy']:.4f}; {results['wall_time_s']:.0f} s")
  return results
