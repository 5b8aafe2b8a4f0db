"""Pure train and eval steps over a (graphdef, TrainState) pair.

`train_step` is one function for every way of running it: under `jax.jit` on
one device, under `jax.jit` over a sharded mesh, and under `jax.pmap` with
`axis_name` set, where the only difference is a `psum` of gradients and
counts across devices. Bind the static arguments with `functools.partial`.
Its `loss` says what is trained: `PairLoss` (the pair classifier,
`modules.PairClassifier`, with the loss its task's outputs take) or
`MaskedLMLoss` (pretraining, `modules.MaskedLM`).
"""

from __future__ import annotations

import dataclasses
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


def pair_logits(model: nnx.Module, batch: Batch, rngs: nnx.Rngs | None) -> jax.Array:
  """A `PairClassifier`'s logits of a padded or packed batch."""
  return model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"],
               batch.get("match_ids"), positions=batch.get("positions"),
               first_positions=batch.get("first_positions"), rngs=rngs)


Outputs = str  # "binary", "classes" or "regression": `config.TaskConfig.outputs`


def per_pair_loss(outputs: Outputs, logits: jax.Array, labels: jax.Array) -> jax.Array:
  """The unweighted loss of each pair: softmax cross-entropy of [..., N]
  class logits against integer labels ("classes"), or the squared error of
  each score against its float label ("regression"); [...] out."""
  if outputs == "classes":
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  if outputs == "regression":
    return jnp.square(logits - labels.astype(jnp.float32))
  raise ValueError(f"unknown outputs {outputs!r}")


@dataclasses.dataclass(frozen=True)
class PairLoss:
  """The classifier's loss, chosen by the task's `outputs`: weighted BCE of
  each pair's logit (`weighted_bce_sum`, positives scaled by `pos_weight`)
  for a binary task, softmax cross-entropy for classes, squared error for
  regression (`per_pair_loss`)."""

  pos_weight: float | None = None
  outputs: Outputs = "binary"

  def __call__(self, model: nnx.Module, batch: Batch,
               rngs: nnx.Rngs | None) -> tuple[jax.Array, jax.Array]:
    """(loss sum, number of real pairs) of `batch`."""
    logits = pair_logits(model, batch, rngs)
    if self.outputs == "binary":
      loss_sum = weighted_bce_sum(logits, batch["labels"], batch["weights"], self.pos_weight)
    else:
      loss_sum = jnp.sum(per_pair_loss(self.outputs, logits, batch["labels"]) * batch["weights"])
    return loss_sum, jnp.sum(batch["weights"])


def masked_lm_sums(model: nnx.Module, batch: Batch,
                   rngs: nnx.Rngs | None) -> dict[str, jax.Array]:
  """Sums over the predicted tokens of a masked batch (`flax_mrpc.data.masking`):
  cross-entropy `loss_sum`, `correct` top-1 predictions and `count`."""
  logits = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"],
                 batch["mlm_positions"], batch.get("match_ids"), positions=batch.get("positions"),
                 rngs=rngs)
  weights = batch["mlm_weights"]
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["mlm_targets"])
  correct = (jnp.argmax(logits, axis=-1) == batch["mlm_targets"]) * weights
  return {"loss_sum": jnp.sum(losses * weights), "correct": jnp.sum(correct),
          "count": jnp.sum(weights)}


@dataclasses.dataclass(frozen=True)
class MaskedLMLoss:
  """Pretraining's loss: cross-entropy of the original token at each masked position."""

  def __call__(self, model: nnx.Module, batch: Batch,
               rngs: nnx.Rngs | None) -> tuple[jax.Array, jax.Array]:
    """(loss sum, number of predicted tokens) of `batch`."""
    sums = masked_lm_sums(model, batch, rngs)
    return sums["loss_sum"], sums["count"]


Loss = PairLoss | MaskedLMLoss


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
    loss: Loss,
    partitionable_bits: bool = True,
    axis_name: str | None = None,
    accumulate_steps: int = 1,
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimizer step on the weighted mean loss of `batch`.

  Args:
    state: the current TrainState.
    batch: [batch, seq] `input_ids`, `token_type_ids`, `attention_mask`,
      `match_ids`; [batch] `labels` and `weights` (0 for padding rows); or a
      packed batch (`flax_mrpc.data.packing`), with `positions`, `first_positions`
      and [batch, pairs per row] `labels` and `weights`; for `MaskedLMLoss`
      a masked batch (`flax_mrpc.data.masking`).
    loss: `PairLoss` or `MaskedLMLoss`, of the model in `graphdef`.
    rng: the run's dropout key; the step folds in `state.step` (and the
      device index under pmap).
    partitionable_bits: the dropout masks' threefry layout (see
      `partitionable_bits_by_default`).
    axis_name: the pmap axis to sum gradients over; None elsewhere.
    accumulate_steps: K > 1 splits the batch's rows (a multiple of K) into K
      micro-batches, rows k, k + K, k + 2K, ..., and sums their loss sums,
      counts and gradients in a `lax.scan` before the one update; micro-batch
      k's dropout key folds in k.
  Returns:
    The new state and {"loss_sum", "count"}: the weighted loss sum and the
    number of real pairs (or predicted tokens), summed over devices.
  """
  rng = jax.random.fold_in(rng, state.step)
  if axis_name is not None:
    rng = jax.random.fold_in(rng, jax.lax.axis_index(axis_name))

  def sums(micro_batch, micro_rng):
    """(loss sum, count), gradients of the loss sum."""
    loss_sum_fn = lambda params: loss(nnx.merge(graphdef, params), micro_batch,
                                      nnx.Rngs(dropout=micro_rng))
    return jax.value_and_grad(loss_sum_fn, has_aux=True)(state.params)

  with jax.threefry_partitionable(partitionable_bits):
    if accumulate_steps == 1:
      (loss_sum, count), grads = sums(batch, rng)
    else:
      (loss_sum, count), grads = _accumulated(sums, batch, rng, accumulate_steps)
  if axis_name is not None:
    loss_sum, grads, count = jax.lax.psum((loss_sum, grads, count), axis_name)
  grads = jax.tree.map(lambda g: g / jnp.maximum(count, 1.0), grads)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
  return new_state, {"loss_sum": loss_sum, "count": count}


def _accumulated(sums, batch: Batch, rng: jax.Array, accumulate_steps: int):
  """The sums of `sums(micro_batch, key)` over the K = `accumulate_steps`
  strided micro-batches of `batch` (see `train_step`)."""
  rows = jax.tree.leaves(batch)[0].shape[0]
  if rows % accumulate_steps:
    raise ValueError(f"a batch of {rows} rows does not split into {accumulate_steps} "
                     "micro-batches: build batches with rows_multiple a multiple of it.")
  micro_batches = jax.tree.map(
      lambda x: x.reshape(rows // accumulate_steps, accumulate_steps, *x.shape[1:]).swapaxes(0, 1),
      batch)

  def add_micro_batch(total, k_and_micro_batch):
    k, micro_batch = k_and_micro_batch
    return jax.tree.map(jnp.add, total, sums(micro_batch, jax.random.fold_in(rng, k))), None

  shapes = jax.eval_shape(sums, jax.tree.map(lambda x: x[0], micro_batches), rng)
  zeros = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), shapes)
  total, _ = jax.lax.scan(add_micro_batch, zeros, (jnp.arange(accumulate_steps), micro_batches))
  return total


def eval_step(params: nnx.State, batch: Batch, *, graphdef: nnx.GraphDef,
              outputs: Outputs = "binary") -> jax.Array:
  """[batch, seq] inputs -> what the task's `outputs` predict of each pair:
  [batch] probabilities of the positive class ("binary", e.g. paraphrase),
  [batch, N] class probabilities ("classes") or [batch] scores
  ("regression"); [batch, pairs per row, ...] for a packed batch."""
  logits = pair_logits(nnx.merge(graphdef, params), batch, rngs=None)
  if outputs == "binary":
    return jax.nn.sigmoid(logits)
  return jax.nn.softmax(logits, axis=-1) if outputs == "classes" else logits


def masked_lm_eval_step(params: nnx.State, batch: Batch, *,
                        graphdef: nnx.GraphDef) -> dict[str, jax.Array]:
  """`masked_lm_sums` of a masked batch without dropout."""
  return masked_lm_sums(nnx.merge(graphdef, params), batch, rngs=None)


def param_count(params: Any) -> int:
  return sum(x.size for x in jax.tree.leaves(params))
