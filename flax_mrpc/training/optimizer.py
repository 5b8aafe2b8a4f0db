"""The optax optimizer and learning-rate schedule of a training run."""

from __future__ import annotations

import jax
import optax

from flax_mrpc.config import TrainConfig


def learning_rate_schedule(config: TrainConfig, total_steps: int) -> optax.Schedule:
  """Linear warmup over `warmup_fraction` of the steps, then constant, linear
  decay to 0, or cosine decay to 0."""
  peak = config.learning_rate
  warmup = int(config.warmup_fraction * total_steps)
  if config.schedule == "cosine":
    return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, max(total_steps, warmup + 1))
  if config.schedule == "linear":
    decay = optax.linear_schedule(peak, 0.0, max(total_steps - warmup, 1))
  else:
    decay = optax.constant_schedule(peak)
  if warmup == 0:
    return decay
  return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), decay], [warmup])


def _decay_mask(params):
  """Weight decay on matrices (kernels, embeddings) only, not biases or norms."""
  return jax.tree.map(lambda p: p.ndim > 1, params)


def make_optimizer(config: TrainConfig, total_steps: int) -> optax.GradientTransformation:
  """AdamW on the schedule, after global-norm clipping when `clip_norm` is set."""
  adamw = optax.adamw(
      learning_rate_schedule(config, total_steps),
      weight_decay=config.weight_decay,
      mask=_decay_mask,
  )
  if config.clip_norm is None:
    return adamw
  return optax.chain(optax.clip_by_global_norm(config.clip_norm), adamw)
