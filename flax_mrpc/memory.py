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

from flax_mrpc.config import ModelConfig

GIB = 2**30


def parameter_count(model: ModelConfig) -> int:
  """The parameters of `PairClassifier(model)`, from its sizes."""
  d, ff, width = model.d_model, model.d_ff, model.embedding_width
  segments_and_norm = 0 if model.seed_embedding else model.type_vocab_size + 2
  positions = model.num_positions if model.absolute_positions else 0
  embeddings = (model.vocab_size + positions + segments_and_norm
                + 2 * model.match_embedding) * width
  if width != d:
    embeddings += width * d + d  # the projection to d_model
  layer = 4 * (d * d + d) + 2 * d * ff + ff + d + 4 * d
  if model.relative_attention:
    embeddings += 2 * (model.position_buckets or model.max_relative_positions) * d
    embeddings += 2 * d if model.norm_relative_embeddings else 0
    if not model.share_relative_key:
      layer += len(model.relative_attention_types.split("|")) * (d * d + d)
  final_norm = 2 * d if model.norm == "pre" else 0
  pooler = (d * d + d) if model.pooler else 0
  return embeddings + model.num_layers * layer + final_norm + pooler + d + 1


def training_bytes(model: ModelConfig, rows: int) -> int:
  """A lower bound on the bytes one device needs to train `model` on [rows,
  max_length] batches."""
  itemsize = 2 if model.dtype == "bfloat16" else 4
  seq = model.max_length
  attention = rows * model.num_heads * seq * seq
  hidden = rows * seq * (model.d_ff + 4 * model.d_model)
  return 16 * parameter_count(model) + model.num_layers * (attention + hidden) * itemsize


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
