"""Orbax checkpoints of a training run under `WORKDIR/checkpoints/`.

Each checkpoint, named by its global step, holds two items:
  state: the `TrainState` (step, params, optimizer state);
  meta:  JSON with the config, the loop position (epoch, batches done in it,
         the epoch's running loss), the per-epoch history and the best epoch.
The dropout key and the data order are pure functions of (config seed, step)
and (seed, epoch), so state + meta resume a run exactly.

Kept: the last `keep_last` checkpoints plus the best by validation score.
Saves are asynchronous; orbax commits a checkpoint atomically (a temporary
folder renamed when complete), so a kill mid-save leaves the earlier ones
intact. A checkpoint that fails to restore is reported and the previous one
is tried; nothing is deleted.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import sys
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from flax import nnx

from flax_mrpc.config import TrainConfig
from flax_mrpc.training.optimizer import make_optimizer
from flax_mrpc.training.steps import TrainState


class CheckpointError(ValueError):
  """The checkpoints in a workdir cannot be used for this run."""


@dataclasses.dataclass(frozen=True)
class Restored:
  step: int
  state: TrainState
  meta: dict[str, Any]


def config_differences(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
  """Human-readable `field: saved -> current` lines for every differing leaf."""
  lines = []
  for key in sorted(set(saved) | set(current)):
    a, b = saved.get(key), current.get(key)
    if isinstance(a, dict) and isinstance(b, dict):
      lines += config_differences(a, b, f"{prefix}{key}.")
    elif a != b:
      lines.append(f"{prefix}{key}: {a!r} -> {b!r}")
  return lines


class Checkpointer:
  """A `CheckpointManager` keeping the last `keep_last` steps and the best one."""

  def __init__(self, directory: Path, keep_last: int = 2):
    policies = ocp.checkpoint_managers
    rank = lambda m: (m["score"], -m["step"])  # ties go to the earlier step, as in the loop
    policy = policies.AnyPreservationPolicy([
        policies.LatestN(n=keep_last), policies.BestN(get_metric_fn=rank, n=1)])
    self.manager = ocp.CheckpointManager(
        Path(directory).absolute(),
        # With best_fn, orbax writes each checkpoint's metrics to disk and reads
        # them back when a run resumes; without it BestN would find none there
        # and drop the best checkpoint of an earlier process.
        options=ocp.CheckpointManagerOptions(preservation_policy=policy, best_fn=rank,
                                             enable_async_checkpointing=True),
    )

  def save(self, state: TrainState, meta: dict[str, Any], score: float | None = None) -> None:
    """Starts saving `state` and `meta` at `state.step`; `score` marks an
    epoch-end checkpoint that competes for best (one without ranks below all)."""
    step = int(state.step)
    if step in self.manager.all_steps():
      return
    # The save finishes in the background: snapshot `meta`, which the caller goes on changing.
    meta = copy.deepcopy(meta)
    self.manager.save(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
        metrics={"score": -math.inf if score is None else score, "step": step},
    )

  def wait(self) -> None:
    """Blocks until every started save is committed."""
    self.manager.wait_until_finished()

  def steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def restore(self, step: int, template: TrainState) -> Restored:
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    restored = self.manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                      meta=ocp.args.JsonRestore()))
    return Restored(step, restored.state, restored.meta)

  def damaged(self, step: int, error: Exception) -> CheckpointError:
    """The error for a checkpoint that cannot be read, naming it and the fix."""
    path = Path(self.manager.directory) / str(step)
    return CheckpointError(
        f"{path}: this checkpoint is damaged and cannot be read ({type(error).__name__}: "
        f"{error}). Delete that folder, then rerun the training command: it resumes from the "
        f"checkpoint before it, if there is one (delete {path.parents[1] / 'results.json'} "
        "first if the run had finished).")

  def latest_meta(self) -> dict[str, Any] | None:
    """The meta item of the newest checkpoint (None when there is none).
    Raises `damaged`'s CheckpointError when it cannot be read."""
    steps = self.steps()
    if not steps:
      return None
    try:
      return self.manager.restore(
          steps[-1], args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
    except Exception as e:  # orbax raises many types for damaged files
      raise self.damaged(steps[-1], e) from None

  def restore_params(self, params: nnx.State, train: TrainConfig,
                     step: int | None = None) -> nnx.State:
    """The parameters saved at `step` (None: in the newest checkpoint that
    restores). `params` gives their tree, `train` the optimizer's, whose
    state is read and dropped. Raises CheckpointError when there is none,
    or `damaged`'s when the checkpoint at `step` cannot be read."""
    template = TrainState.create(params, make_optimizer(train, 1))
    if step is None:
      restored = self.restore_latest(template)
      if restored is None:
        raise CheckpointError(f"{self.manager.directory} holds no checkpoint.")
      return restored.state.params
    try:
      return self.restore(step, template).state.params
    except Exception as e:  # orbax raises many types for damaged files
      raise self.damaged(step, e) from None

  def restore_latest(self, template: TrainState) -> Restored | None:
    """The newest checkpoint that restores; a damaged one is reported and skipped,
    and so is an incomplete one (a save cut short leaves orbax's temporary folder)."""
    for unfinished in sorted(Path(self.manager.directory).glob("*.orbax-checkpoint-tmp*")):
      print(f"warning: {unfinished} is an incomplete checkpoint (its save was cut short); "
            "it is ignored", file=sys.stderr)
    for step in reversed(self.steps()):
      try:
        return self.restore(step, template)
      except Exception as e:  # orbax raises many types for damaged files
        print(f"warning: checkpoint {step} in {self.manager.directory} could not be read "
              f"({type(e).__name__}: {e}); trying the previous one", file=sys.stderr)
    if self.steps():
      raise CheckpointError(f"no checkpoint in {self.manager.directory} could be read. "
                            "Pass --overwrite to start afresh.")
    return None

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
