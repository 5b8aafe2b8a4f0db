"""Data-parallel execution of `steps.train_step` and `steps.eval_step`.

Modes (`--parallel`):
  none      `jax.jit` on one device.
  sharding  `jax.jit` over a one-axis `Mesh` ("data") of all devices: the
            batch is split along its rows, parameters and optimizer state are
            replicated, and XLA sums the gradients across devices.
  pmap      `jax.pmap` over the local devices: state replicated with a leading
            device axis, the batch reshaped to [devices, rows / devices, ...],
            gradients and counts summed with `psum` inside the step.
  fsdp      as sharding, but parameters, gradients and both AdamW moments
            are sharded over the devices (FSDP / ZeRO-3; `fsdp_spec`): each
            device holds about 1 / devices of the state, and XLA gathers each
            layer's weights where they are used. Build the host state under
            `initialisation_device(mode)` and `put_state` sends each device
            only its shards; checkpoints are saved sharded, and restore onto
            any device count (`restore_target`).
  auto      sharding when there is more than one device, else none
            (`train` picks fsdp when the replicated state would not fit).

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

import contextlib
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, NamedSharding, PartitionSpec

from flax_mrpc.training import steps

MODES = ("auto", "none", "pmap", "sharding", "fsdp")
_AXIS = "data"
# fsdp replicates arrays smaller than this (biases, norms, step counts): their
# gathers would cost more than they save.
MIN_SHARDED_SIZE = 2**12


def fsdp_spec(shape: tuple[int, ...], num_devices: int) -> PartitionSpec:
  """How fsdp lays out an array of `shape` over `num_devices`: split along
  its largest dimension that divides evenly, or replicated when it is
  smaller than MIN_SHARDED_SIZE or no dimension divides."""
  if num_devices == 1 or math.prod(shape) < MIN_SHARDED_SIZE:
    return PartitionSpec()
  divisible = [axis for axis in range(len(shape)) if shape[axis] % num_devices == 0]
  if not divisible:
    return PartitionSpec()
  axis = max(divisible, key=lambda a: shape[a])
  return PartitionSpec(*([None] * axis), _AXIS)


def initialisation_device(mode: str):
  """A context in which to build the host state of a run in `mode`: fsdp's on
  the host's CPU, so that no accelerator ever holds a whole copy; the
  default device otherwise."""
  if resolve(mode) == "fsdp":
    return jax.default_device(jax.local_devices(backend="cpu")[0])
  return contextlib.nullcontext()


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
  if mode not in ("sharding", "fsdp") and jax.process_count() > 1:
    raise ValueError(f"--parallel {mode} runs within one process; with "
                     f"{jax.process_count()} processes use --parallel sharding, fsdp or auto.")
  return mode


def device_count(mode: str) -> int:
  """The devices a batch is split over in `mode` (one of MODES)."""
  mode = resolve(mode)
  return {"none": 1, "sharding": jax.device_count(), "fsdp": jax.device_count(),
          "pmap": jax.local_device_count()}[mode]


def _layout_key(batch: dict[str, Any]) -> tuple:
  """What a compiled step depends on in a batch: each array's shape and dtype."""
  return tuple((name, tuple(x.shape), str(x.dtype)) for name, x in sorted(batch.items()))


class DataParallel:
  """Compiled train and eval steps for one mode, and the moves of state and
  batches that it needs.

  Args:
    mode: one of MODES.
    graphdef, tx, loss: the static arguments of `steps.train_step`.
    partitionable_bits: the dropout masks' bit layout; by default
      `steps.partitionable_bits_by_default` (always on a mesh).
    evaluate: the eval step, `steps.eval_step` or `steps.masked_lm_eval_step`.
    accumulate_steps: micro-batches per optimizer step (`steps.train_step`).

  Attributes:
    rows_multiple: every training batch's rows must be a multiple of this
      (devices x accumulate_steps).
  """

  def __init__(self, mode: str, graphdef, tx, loss: steps.Loss,
               partitionable_bits: bool | None = None, evaluate=steps.eval_step,
               accumulate_steps: int = 1):
    self.mode = resolve(mode)
    self.num_devices = device_count(self.mode)
    self.rows_multiple = self.num_devices * accumulate_steps
    on_mesh = self.mode in ("sharding", "fsdp")
    if partitionable_bits is None:
      partitionable_bits = steps.partitionable_bits_by_default(on_mesh)
    train = functools.partial(steps.train_step, graphdef=graphdef, tx=tx, loss=loss,
                              partitionable_bits=partitionable_bits,
                              accumulate_steps=accumulate_steps)
    self._step = train  # unjitted, for fsdp's shardings and pmap's one-device lowering
    self._compiled = {}  # batch layout -> the step `compile_train_step` compiled for it
    evaluate = functools.partial(evaluate, graphdef=graphdef)
    self._eval = jax.jit(evaluate)
    if on_mesh:
      self.mesh = jax.make_mesh((self.num_devices,), (_AXIS,), axis_types=(AxisType.Auto,))
      self._replicated = NamedSharding(self.mesh, PartitionSpec())
      self._rows = NamedSharding(self.mesh, PartitionSpec(_AXIS))
    if self.mode == "none":
      self._train = jax.jit(train, donate_argnums=0)
    elif self.mode == "sharding":
      self._train = jax.jit(train, in_shardings=(self._replicated, self._rows, self._replicated),
                            out_shardings=self._replicated, donate_argnums=0)
      self._eval = jax.jit(evaluate, in_shardings=(self._replicated, self._rows),
                           out_shardings=self._replicated)
    elif self.mode == "fsdp":  # compiled at the first step, for that state's shardings
      self._train = None
      self._eval = jax.jit(evaluate, out_shardings=self._replicated)
    else:
      self._train = jax.pmap(functools.partial(train, axis_name=_AXIS), axis_name=_AXIS,
                             in_axes=(0, 0, None), donate_argnums=0)

  def state_shardings(self, tree):
    """fsdp's sharding of each array of `tree` (`fsdp_spec`); the same
    structure with shardings for leaves (usable where jit takes shardings)."""
    return jax.tree.map(lambda x: NamedSharding(self.mesh, fsdp_spec(np.shape(x),
                                                                     self.num_devices)), tree)

  def compile_train_step(self, state, batch: dict[str, Any]):
    """The train step compiled for `state` and a global `batch` (arrays or
    `jax.ShapeDtypeStruct`s) without running it; its `memory_analysis()`
    gives what a step needs per device. `train_step` then runs batches of
    this shape with it. Under pmap, one device's step on its rows (not kept)."""
    key = jax.eval_shape(lambda: jax.random.key(0))
    if self.mode == "pmap":
      rows = jax.tree.leaves(batch)[0].shape[0] // self.num_devices
      batch = {k: jax.ShapeDtypeStruct((rows, *v.shape[1:]), v.dtype) for k, v in batch.items()}
      return jax.jit(self._step).lower(state, batch, key).compile()
    if self._train is None:
      self._train = self.fsdp_step(state)
    compiled = self._train.lower(state, batch, key).compile()
    self._compiled[_layout_key(batch)] = compiled
    return compiled

  def fsdp_step(self, state):
    """The jitted fsdp train step of states shaped as `state` (arrays or
    `jax.ShapeDtypeStruct`s), whose shards stay where `state_shardings` puts them."""
    shardings = self.state_shardings(state)
    return jax.jit(self._step, in_shardings=(shardings, self._rows, self._replicated),
                   out_shardings=(shardings, self._replicated), donate_argnums=0)

  def _place(self, tree, shardings):
    """Each process copies its own (identical) host values' pieces to its own
    devices; arrays already laid out so stay as they are."""
    def place(x, sharding):
      if isinstance(x, jax.Array) and x.sharding.is_equivalent_to(sharding, np.ndim(x)):
        return x
      return jax.make_array_from_callback(np.shape(x), sharding,
                                          lambda index: np.asarray(x)[index])
    return jax.tree.map(place, tree, shardings)

  def _layout(self, tree):
    """`tree`'s arrays laid out for a mesh mode: replicated, or fsdp's shards."""
    if self.mode == "fsdp":
      return self._place(tree, self.state_shardings(tree))
    return self._place(tree, jax.tree.map(lambda _: self._replicated, tree))

  def put_state(self, state: steps.TrainState) -> steps.TrainState:
    """A host (single-device) state laid out for this mode."""
    if self.mode in ("sharding", "fsdp"):
      return self._layout(state)
    if self.mode == "pmap":
      return jax.tree.map(lambda x: jnp.broadcast_to(x, (self.num_devices, *x.shape)), state)
    return state

  def put_params(self, params):
    """Host parameters laid out for `eval_step`."""
    if self.mode in ("sharding", "fsdp"):
      return self._layout(params)
    return params

  def restore_target(self, state: steps.TrainState):
    """What a checkpoint of `state`'s tree is restored as: under fsdp its
    abstract arrays with fsdp's shardings, so each device reads only its
    shards; elsewhere `state` itself (one host copy)."""
    if self.mode != "fsdp":
      return state
    return jax.tree.map(lambda x, sharding: jax.ShapeDtypeStruct(np.shape(x), x.dtype,
                                                                 sharding=sharding),
                        state, self.state_shardings(state))

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
    if self.mode in ("sharding", "fsdp"):  # each process supplies its own devices' rows
      return {k: jax.make_array_from_callback(v.shape, self._rows, lambda index, v=v: v[index])
              for k, v in batch.items()}
    if self.mode == "pmap":
      return {k: v.reshape(self.num_devices, rows // self.num_devices, *v.shape[1:])
              for k, v in batch.items()}
    return batch

  def train_step(self, state, batch: dict[str, np.ndarray], rng: jax.Array):
    """`steps.train_step` on the global `batch`; metrics are global sums."""
    if self._train is None:
      self._train = self.fsdp_step(state)
    step = self._compiled.get(_layout_key(batch), self._train)
    state, metrics = step(state, self._put_batch(batch), rng)
    if self.mode == "pmap":
      metrics = jax.tree.map(lambda x: x[0], metrics)
    return state, metrics

  def eval_step(self, params, batch: dict[str, np.ndarray]):
    """The eval step on `batch` (rows a multiple of `num_devices`) with
    `params` from `host_state` or `put_params`: [rows] probabilities from
    `steps.eval_step`."""
    if self.mode in ("sharding", "fsdp"):
      batch = self._put_batch(batch)
    return self._eval(params, batch)
