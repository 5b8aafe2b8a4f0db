"""The training loop that fine-tuning (`flax_mrpc.train`) and pretraining
(`flax_mrpc.pretrain`) share: epochs of compiled steps, an evaluation after
each epoch, orbax checkpoints, exact resume, preemption and progress.

A `Task` supplies what differs: its batches, its compiled steps (a
`parallel.DataParallel`), its per-epoch evaluation and the score that picks
the best epoch. `run_epochs` does the rest:

- resumes from the workdir's latest checkpoint after checking that it was
  written by the same configuration at a consistent loop position;
- checkpoints at each epoch end (with the epoch's score), every
  `checkpoint_every_steps` steps, and when SIGTERM/SIGINT arrives, then
  raises `Preempted`; a kill loses at most the steps since the last one;
- refuses a non-finite loss (`NonFiniteLoss`), naming the kept checkpoints;
- writes `metrics.jsonl` (one record per epoch) and TensorBoard events;
- stops early after `patience` epochs without a better score.

With several processes only process 0 writes files, and a SIGTERM to any
process stops all of them at one agreed step (JAX's preemption service).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import math
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import jax
from jax.experimental import multihost_utils
from tqdm import tqdm

from flax_mrpc.config import Config
from flax_mrpc.data.epochs import TrainEpochs
from flax_mrpc.training import parallel, steps
from flax_mrpc.training.checkpoint import Checkpointer, CheckpointError, config_differences
from flax_mrpc.training.tensorboard import EpochLogger

EXIT_PREEMPTED = 75  # sysexits' EX_TEMPFAIL: a checkpoint was saved; rerun to resume


class Preempted(Exception):
  """SIGTERM or SIGINT arrived; a checkpoint was saved at the step boundary."""


class NonFiniteLoss(ValueError):
  """The training loss became NaN or infinite."""


def log(message: str) -> None:
  """One line on stderr, from the main process only."""
  if parallel.is_main_process():
    print(message, file=sys.stderr, flush=True)


@dataclasses.dataclass
class LoopPosition:
  """Where a run stands, saved as each checkpoint's `meta` item: with the
  checkpoint's TrainState it resumes the run exactly (the dropout key and
  the data order are pure functions of the seed, the step and the epoch).

  Attributes:
    config: the run's `Config.to_dict()`; a resume with another is refused.
    epoch: the epoch under way, from 1.
    batch: the batches of that epoch already trained.
    loss_sum, count: that epoch's running training loss, summed over pairs.
    history: every finished epoch's metrics.jsonl record.
    best: {"epoch", "step", "score", **metrics} of the best-scoring epoch.
  """

  config: dict[str, Any]
  epoch: int = 1
  batch: int = 0
  loss_sum: float = 0.0
  count: float = 0.0
  history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
  best: dict[str, Any] | None = None

  def step(self, epochs: TrainEpochs) -> int:
    """The global step this position stands at."""
    return epochs.steps_before(self.epoch) + self.batch


@dataclasses.dataclass
class Task:
  """What one kind of training run brings to `run_epochs`.

  Attributes:
    name: what the progress bar and log lines put before "epoch N", e.g.
      "pretrain " ("" for fine-tuning).
    epochs: the batches of every epoch and their step counts.
    runner: the compiled train step (and eval step) in the run's parallel mode.
    rng: the run's dropout key.
    epoch_metrics: host TrainState -> the epoch's metrics, a dict of dicts
      of floats merged into its metrics.jsonl record (e.g. {"validation": ...}).
    score: those metrics -> the number the best epoch maximises.
    summary: those metrics -> the end of the epoch's log line.
    patience: stop after this many epochs without a better score; None: never.
  """

  name: str
  epochs: TrainEpochs
  runner: parallel.DataParallel
  rng: jax.Array
  epoch_metrics: Callable[[steps.TrainState], dict[str, Any]]
  score: Callable[[dict[str, Any]], float]
  summary: Callable[[dict[str, Any]], str]
  patience: int | None = None


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
        "--overwrite or a new --workdir.")


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


def _resume(checkpointer: Checkpointer, state: steps.TrainState, runner: parallel.DataParallel,
            config: Config, epochs: TrainEpochs,
            workdir: Path) -> tuple[steps.TrainState, LoopPosition]:
  """The latest checkpoint's state (read in `runner`'s layout) and loop
  position, checked against this run's configuration; `state` and a fresh
  position when there is none."""
  loop = LoopPosition(config.to_dict())
  restored = checkpointer.restore_latest(runner.restore_target(state))
  if restored is None:
    return state, loop
  saved = Config.from_dict(restored.meta["config"]).to_dict()  # new fields at defaults
  differences = config_differences(saved, config.to_dict())
  if differences:
    raise CheckpointError(
        f"{workdir} holds checkpoints of another configuration:\n  " + "\n  ".join(differences)
        + "\nPass --overwrite to start afresh, or choose another --workdir.")
  loop = LoopPosition(**restored.meta)
  position = loop.step(epochs)
  if position != restored.step:
    raise CheckpointError(
        f"checkpoint {restored.step} in {workdir} records loop position {position}; it is "
        "inconsistent. Pass --overwrite to start afresh.")
  log(f"resuming from the checkpoint at step {restored.step} "
      f"(epoch {loop.epoch}, batch {loop.batch})")
  return restored.state, loop


def run_epochs(task: Task, state: steps.TrainState, config: Config, workdir: Path,
               checkpointer: Checkpointer, progress: bool = True,
               checkpoint_every_steps: int | None = None) -> tuple[LoopPosition, Any]:
  """Trains `state` (a host TrainState, or the latest checkpoint's) through
  the task's epochs, as the module docstring says.

  Returns the final `LoopPosition` (its `best` and `history`) and the final
  host TrainState.
  """
  main = parallel.is_main_process()
  runner, epochs = task.runner, task.epochs
  tensorboard = EpochLogger(workdir / "tensorboard" if main else None)
  try:
    state, loop = _resume(checkpointer, state, runner, config, epochs, workdir)
    state = runner.put_state(state)
    if main:
      with open(workdir / "metrics.jsonl", "w") as f:
        f.writelines(json.dumps(record) + "\n" for record in loop.history)
    with _stop_requests() as should_stop:
      while loop.epoch <= len(epochs.steps):
        best_epoch = loop.best["epoch"] if loop.best else 0
        if task.patience is not None and loop.best and (
            loop.epoch - 1 - best_epoch >= task.patience):
          log(f"early stop: no better score for {task.patience} epochs")
          break
        epoch_start = time.time()
        state, stop = _train_epoch(task, state, loop, checkpointer, should_stop, progress,
                                   checkpoint_every_steps, workdir)
        record = _end_epoch(task, runner.host_state(state), loop, checkpointer, workdir,
                            time.time() - epoch_start)
        tensorboard.write(record)
        if stop:
          raise _preempted(checkpointer, record["step"], workdir)
  finally:
    tensorboard.close()
  return loop, runner.host_state(state)


def _train_epoch(task: Task, state, loop: LoopPosition, checkpointer: Checkpointer,
                 should_stop, progress: bool, checkpoint_every_steps: int | None,
                 workdir: Path) -> tuple[Any, bool]:
  """Runs the rest of the current epoch's steps, updating `loop` in place;
  returns the state and whether a stop was requested at its last step."""
  epochs, epoch = task.epochs, loop.epoch
  epoch_steps = epochs.steps[epoch - 1]
  remaining = itertools.islice(epochs.batches(epoch), loop.batch, None)
  loss_sum, count = loop.loss_sum, loop.count  # summed on the device
  stop = False
  with tqdm(total=epoch_steps, initial=loop.batch, leave=False, disable=not progress,
            desc=f"{task.name}epoch {epoch}/{len(epochs.steps)}") as bar:
    running = None  # the metrics of the step before, which may still be computing
    for batch in remaining:
      state, step_metrics = task.runner.train_step(state, batch, task.rng)
      _count_finished(bar, running)
      running = step_metrics
      loss_sum += step_metrics["loss_sum"]
      count += step_metrics["count"]
      loop.batch += 1
      step = loop.step(epochs)
      stop = should_stop(step)
      save_now = bool(checkpoint_every_steps) and step % checkpoint_every_steps == 0
      if save_now or stop or loop.batch % 20 == 0:
        mean_loss = float(loss_sum / count)
        _check_finite(mean_loss, checkpointer, step)
        bar.set_postfix(loss=f"{mean_loss:.4f}")
      if loop.batch == epoch_steps:
        break  # the epoch-end checkpoint follows
      if save_now or stop:
        loop.loss_sum, loop.count = float(loss_sum), float(count)
        checkpointer.save(task.runner.host_state(state), dataclasses.asdict(loop))
      if stop:
        raise _preempted(checkpointer, step, workdir)
    _count_finished(bar, running)
  loop.loss_sum, loop.count = float(loss_sum), float(count)
  _check_finite(loop.loss_sum / loop.count, checkpointer, loop.step(epochs))
  return state, stop


def _end_epoch(task: Task, host_state: steps.TrainState, loop: LoopPosition,
               checkpointer: Checkpointer, workdir: Path, epoch_time_s: float) -> dict[str, Any]:
  """Evaluates the finished epoch, records it and checkpoints it (with its
  score); returns its metrics.jsonl record."""
  epoch = loop.epoch
  train_loss = loop.loss_sum / loop.count
  metrics = task.epoch_metrics(host_state)
  record = {"epoch": epoch, "step": int(host_state.step), "train_loss": train_loss, **metrics,
            "epoch_time_s": epoch_time_s}
  score = task.score(metrics)
  if loop.best is None or score > loop.best["score"]:
    loop.best = {"epoch": epoch, "step": record["step"], "score": score, **metrics}
  loop.epoch, loop.batch, loop.loss_sum, loop.count = epoch + 1, 0, 0.0, 0.0
  loop.history = loop.history + [record]
  checkpointer.save(host_state, dataclasses.asdict(loop), score=score)
  checkpointer.wait()
  if parallel.is_main_process():
    with open(workdir / "metrics.jsonl", "a") as f:
      f.write(json.dumps(record) + "\n")
  log(f"{task.name}epoch {epoch}: train loss {train_loss:.4f}, {task.summary(metrics)}")
  return record
