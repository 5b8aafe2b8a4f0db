"""Data-parallel execution of `steps.train_step` and `steps.eval_step`.

Modes (`--parallel`):
  none      `jax.jit` on one device.
  sharding  `jax.jit` over a one-axis `Mesh` ("data") of all devices: the
            batch is split along its rows, parameters and optimizer state are
            replicated, and XLA sums the gradients across devices.
  pmap      `jax.pmap` over the local devices: state replicated with a leading
            device axis, the batch reshaped to [devices, rows / devices, ...],
            gradients and counts summed with `psum` inside the step.
  auto      sharding when there is more than one device, else none.

Several processes (hosts of a TPU VM pod slice, or GPU hosts): call
`initialize_processes` first; every process then runs the same program on the
same global batches, `sharding` spans the devices of all processes, and each
process moves only its own rows of each batch to its own devices
(`jax.make_array_from_callback`). Only process 0 writes files
(`is_main_process`).

Every mode runs the same pure step on the same global batch; batches are
padded with zero-weight rows to a multiple of the device count
(`batching.batches(..., rows_multiple=num_devices)`), so no example is
dropped or counted twice. With dropout
off the modes give the same parameters (up to float summation order). Dropout
masks match between none and sharding when both draw threefry's partitionable
layout (sharding always does; `none` does off XLA:CPU, see
`steps.partitionable_bits_by_default`); under pmap each device folds its index
into the key, so its masks differ.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, NamedSharding, PartitionSpec

from flax_mrpc.training import steps

MODES = ("auto", "none", "pmap", "sharding")
_AXIS = "data"


def initialize_processes(coordinator_address: str | None = None,
                         num_processes: int | None = None,
                         process_id: int | None = None) -> None:
  """Joins this process to a multi-process run with `jax.distributed.initialize`,
  before anything touches the devices. On TPU VM pod slices and the clusters
  JAX detects (SLURM, Open MPI, ...) pass nothing; elsewhere pass all three.
  Collectives between CPU processes use gloo."""
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address, num_processes, process_id)


def is_main_process() -> bool:
  """Whether this process writes the run's files and logs (process 0)."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Waits until every process reaches the barrier `name` (no-op with one process)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def resolve(mode: str) -> str:
  """The concrete mode of `mode` (one of MODES) on this host's devices."""
  if mode not in MODES:
    raise ValueError(f"unknown parallel mode {mode!r}; choose one of {MODES}.")
  if mode == "auto":
    return "sharding" if jax.device_count() > 1 else "none"
  if mode != "sharding" and jax.process_count() > 1:
    raise ValueError(f"--parallel {mode} runs within one process; with "
                     f"{jax.process_count()} processes use --parallel sharding (or auto).")
  return mode


def device_count(mode: str) -> int:
  """The devices a batch is split over in `mode` (one of MODES)."""
  mode = resolve(mode)
  return {"none": 1, "sharding": jax.device_count(), "pmap": jax.local_device_count()}[mode]


class DataParallel:
  """Compiled train and eval steps for one mode, and the moves of state and
  batches that it needs.

  Args:
    mode: one of MODES.
    graphdef, tx, loss: the static arguments of `steps.train_step`.
    partitionable_bits: the dropout masks' bit layout; by default
      `steps.partitionable_bits_by_default` (always under sharding).
    evaluate: the eval step, `steps.eval_step` or `steps.masked_lm_eval_step`.
  """

  def __init__(self, mode: str, graphdef, tx, loss: steps.Loss,
               partitionable_bits: bool | None = None, evaluate=steps.eval_step):
    self.mode = resolve(mode)
    self.num_devices = device_count(self.mode)
    if partitionable_bits is None:
      partitionable_bits = steps.partitionable_bits_by_default(self.mode == "sharding")
    train = functools.partial(steps.train_step, graphdef=graphdef, tx=tx, loss=loss,
                              partitionable_bits=partitionable_bits)
    evaluate = functools.partial(evaluate, graphdef=graphdef)
    self._eval = jax.jit(evaluate)
    if self.mode == "none":
      self._train = jax.jit(train, donate_argnums=0)
    elif self.mode == "sharding":
      mesh = jax.make_mesh((self.num_devices,), (_AXIS,), axis_types=(AxisType.Auto,))
      self._replicated = NamedSharding(mesh, PartitionSpec())
      self._rows = NamedSharding(mesh, PartitionSpec(_AXIS))
      self._train = jax.jit(train, in_shardings=(self._replicated, self._rows, self._replicated),
                            out_shardings=self._replicated, donate_argnums=0)
      self._eval = jax.jit(evaluate, in_shardings=(self._replicated, self._rows),
                           out_shardings=self._replicated)
    else:
      self._train = jax.pmap(functools.partial(train, axis_name=_AXIS), axis_name=_AXIS,
                             in_axes=(0, 0, None), donate_argnums=0)

  def _replicate(self, tree):
    """Each process copies its own (identical) values to its own devices."""
    return jax.tree.map(lambda x: jax.make_array_from_callback(
        np.shape(x), self._replicated, lambda index: np.asarray(x)[index]), tree)

  def put_state(self, state: steps.TrainState) -> steps.TrainState:
    """A host (single-device) state laid out for this mode."""
    if self.mode == "sharding":
      return self._replicate(state)
    if self.mode == "pmap":
      return jax.tree.map(lambda x: jnp.broadcast_to(x, (self.num_devices, *x.shape)), state)
    return state

  def put_params(self, params):
    """Host parameters laid out for `eval_step`."""
    if self.mode == "sharding":
      return self._replicate(params)
    return params

  def host_state(self, state: steps.TrainState) -> steps.TrainState:
    """The state as one copy (for checkpoints and evaluation)."""
    if self.mode == "pmap":
      return jax.tree.map(lambda x: x[0], state)
    return state

  def _put_batch(self, batch: dict[str, np.ndarray]) -> Any:
    rows = len(batch["weights"])
    if rows % self.num_devices:
      raise ValueError(f"a batch of {rows} rows does not split over {self.num_devices} "
                       "devices: build batches with rows_multiple=DataParallel.num_devices.")
    if self.mode == "sharding":  # each process supplies the rows of its own devices
      return {k: jax.make_array_from_callback(v.shape, self._rows, lambda index, v=v: v[index])
              for k, v in batch.items()}
    if self.mode == "pmap":
      return {k: v.reshape(self.num_devices, rows // self.num_devices, *v.shape[1:])
              for k, v in batch.items()}
    return batch

  def train_step(self, state, batch: dict[str, np.ndarray], rng: jax.Array):
    """`steps.train_step` on the global `batch`; metrics are global sums."""
    state, metrics = self._train(state, self._put_batch(batch), rng)
    if self.mode == "pmap":
      metrics = jax.tree.map(lambda x: x[0], metrics)
    return state, metrics

  def eval_step(self, params, batch: dict[str, np.ndarray]):
    """The eval step on `batch` (rows a multiple of `num_devices`) with
    `params` from `host_state` or `put_params`: [rows] probabilities from
    `steps.eval_step`."""
    if self.mode == "sharding":
      batch = self._put_batch(batch)
    return self._eval(params, batch)
