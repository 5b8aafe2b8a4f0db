"""Pure train and eval steps over a (graphdef, TrainState) pair.

`train_step` is one function for every way of running it: under `jax.jit` on
one device, under `jax.jit` over a sharded mesh, and under `jax.pmap` with
`axis_name` set, where the only difference is a `psum` of gradients and
counts across devices. Bind the static arguments with `functools.partial`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct

Batch = dict[str, jax.Array]


@struct.dataclass
class TrainState:
  """Everything that changes during training: step, parameters, optimizer state."""

  step: jax.Array
  params: nnx.State
  opt_state: optax.OptState

  @classmethod
  def create(cls, params: nnx.State, tx: optax.GradientTransformation) -> "TrainState":
    return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))


def weighted_bce_sum(
    logits: jax.Array, labels: jax.Array, weights: jax.Array, pos_weight: float | None
) -> jax.Array:
  """Sum over the batch of BCE-with-logits, positives scaled by `pos_weight`
  (PyTorch's `BCEWithLogitsLoss(pos_weight=...)`), each pair scaled by its
  `weights` entry (0 for padding). All inputs of one shape ([batch], or
  [batch, pairs per row] when packed); returns a scalar."""
  per_example = optax.sigmoid_binary_cross_entropy(logits, labels.astype(jnp.float32))
  if pos_weight is not None:
    per_example = per_example * jnp.where(labels == 1, pos_weight, 1.0)
  return jnp.sum(per_example * weights)


def _logits(graphdef: nnx.GraphDef, params: nnx.State, batch: Batch,
            rngs: nnx.Rngs | None) -> jax.Array:
  model = nnx.merge(graphdef, params)
  return model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"],
               batch.get("match_ids"), positions=batch.get("positions"),
               first_positions=batch.get("first_positions"), rngs=rngs)


def partitionable_bits_by_default(sharded: bool) -> bool:
  """Which of threefry's two bit layouts the dropout masks use by default
  (`jax_threefry_partitionable`). The partitionable one gives the same masks
  however a batch is sharded over a mesh, so `sharded` steps always use it,
  as do GPUs and TPUs. XLA:CPU draws the other faster (see
  experiments/benchmarks/step_profile.py --partitionable-bits). Both are
  Bernoulli draws of the same rate; only the random stream differs."""
  return sharded or jax.default_backend() != "cpu"


def train_step(
    state: TrainState,
    batch: Batch,
    rng: jax.Array,
    *,
    graphdef: nnx.GraphDef,
    tx: optax.GradientTransformation,
    pos_weight: float | None,
    partitionable_bits: bool = True,
    axis_name: str | None = None,
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimizer step on the weighted mean loss of `batch`.

  Args:
    state: the current TrainState.
    batch: [batch, seq] `input_ids`, `token_type_ids`, `attention_mask`,
      `match_ids`; [batch] `labels` and `weights` (0 for padding rows); or a
      packed batch (`flax_mrpc.packing`), with `positions`, `first_positions`
      and [batch, pairs per row] `labels` and `weights`.
    rng: the run's dropout key; the step folds in `state.step` (and the
      device index under pmap).
    partitionable_bits: the dropout masks' threefry layout (see
      `partitionable_bits_by_default`).
    axis_name: the pmap axis to sum gradients over; None elsewhere.
  Returns:
    The new state and {"loss_sum", "count"}: the weighted loss sum and the
    number of real examples, summed over devices.
  """
  rng = jax.random.fold_in(rng, state.step)
  if axis_name is not None:
    rng = jax.random.fold_in(rng, jax.lax.axis_index(axis_name))

  def loss_sum_fn(params):
    logits = _logits(graphdef, params, batch, nnx.Rngs(dropout=rng))
    return weighted_bce_sum(logits, batch["labels"], batch["weights"], pos_weight)

  with jax.threefry_partitionable(partitionable_bits):
    loss_sum, grads = jax.value_and_grad(loss_sum_fn)(state.params)
  count = jnp.sum(batch["weights"])
  if axis_name is not None:
    loss_sum, grads, count = jax.lax.psum((loss_sum, grads, count), axis_name)
  grads = jax.tree.map(lambda g: g / jnp.maximum(count, 1.0), grads)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
  return new_state, {"loss_sum": loss_sum, "count": count}


def eval_step(params: nnx.State, batch: Batch, *, graphdef: nnx.GraphDef) -> jax.Array:
  """[batch, seq] inputs -> [batch] probability that each pair is a paraphrase
  ([batch, pairs per row] for a packed batch)."""
  return jax.nn.sigmoid(_logits(graphdef, params, batch, rngs=None))


def param_count(params: Any) -> int:
  return sum(x.size for x in jax.tree.leaves(params))
