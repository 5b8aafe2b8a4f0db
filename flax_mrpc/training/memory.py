"""Refusing a training run that cannot fit in memory, before any work.

`training_bytes` is a lower bound on what one device holds while training:
the parameters with their gradients and AdamW's two moments (float32), and
per layer the activations the backward pass keeps, of which the attention
probabilities [rows, heads, seq, seq] grow with the square of the length.
XLA needs more than this (temporaries, the other activations), so a run
refused by `check_fits` could never have run, and a run it lets through may
still be too large.
"""

from __future__ import annotations

import jax
from flax import nnx

from flax_mrpc.config import ModelConfig
from flax_mrpc.modules import PairClassifier
from flax_mrpc.training.steps import param_count

GIB = 2**30


def _parameter_count(model: ModelConfig) -> int:
  """The parameters of `PairClassifier(model)`, from its abstract shapes (no memory)."""
  abstract = nnx.eval_shape(lambda: PairClassifier(model, rngs=nnx.Rngs(0)))
  return param_count(nnx.state(abstract, nnx.Param))


def training_bytes(model: ModelConfig, rows: int) -> int:
  """A lower bound on the bytes one device needs to train `model` on [rows,
  max_length] batches."""
  itemsize = 2 if model.dtype == "bfloat16" else 4
  seq = model.max_length
  attention = rows * model.num_heads * seq * seq
  hidden = rows * seq * (model.d_ff + 4 * model.d_model)
  return 16 * _parameter_count(model) + model.num_layers * (attention + hidden) * itemsize


def available_bytes() -> int | None:
  """Memory of this process's first device: an accelerator's limit, or for the CPU the
  host's available memory (Linux); None when unknown."""
  stats = jax.local_devices()[0].memory_stats() or {}
  if "bytes_limit" in stats:
    return int(stats["bytes_limit"])
  try:
    with open("/proc/meminfo") as f:
      fields = dict(line.split(":", 1) for line in f)
    return int(fields["MemAvailable"].split()[0]) * 1024
  except (OSError, KeyError, ValueError):
    return None


def check_fits(model: ModelConfig, batch_size: int) -> None:
  """Raises ValueError when training `model` on batches of `batch_size` pairs,
  split over the devices, needs more than one device has."""
  rows = -(-batch_size // jax.device_count())
  needed, available = training_bytes(model, rows), available_bytes()
  if available is not None and needed > available:
    raise ValueError(
        f"max_length {model.max_length} with batch_size {batch_size} ({rows} rows per device), "
        f"{model.num_layers} layer(s) of width {model.d_model}, needs at least "
        f"{needed / GIB:,.1f} GiB to train; {jax.local_devices()[0].platform} device 0 has "
        f"{available / GIB:,.1f} GiB available. Lower max_length or --batch-size.")
