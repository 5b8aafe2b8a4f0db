"""Batches of token arrays, padded so that no example is dropped.

Every batch holds up to `batch_size` examples in exactly `batch_size` rows
(rounded up to `rows_multiple`, the device count under data parallelism):
missing rows are copies of its first row whose `weights` entry is 0, and
losses and metrics weight each row by `weights` (1 real, 0 padding).

Sequence length: by default every batch keeps the arrays' full `max_length`,
so a jitted step compiles once. With `pad_multiple`, a batch is cut to its
longest pair rounded up to a multiple of `pad_multiple` (dynamic padding), so
the step compiles once per distinct length (at most max_length / pad_multiple
shapes) and short pairs cost less. `length_grouped_order` makes batches of
pairs of similar length, which is where dynamic padding saves the most.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

# Batches per group in `length_grouped_order` (as in Hugging Face's
# LengthGroupedSampler): large enough to find pairs of similar length, small
# enough that every part of the epoch still mixes lengths.
GROUP_BATCHES = 50


def round_up(n: int, multiple: int) -> int:
  """The smallest multiple of `multiple` that is at least `n`."""
  return -(-n // multiple) * multiple


def num_batches(num_examples: int, batch_size: int) -> int:
  return round_up(num_examples, batch_size) // batch_size


def epoch_order(num_examples: int, seed: int, epoch: int) -> np.ndarray:
  """The shuffled example order of one training epoch: a pure function of
  (seed, epoch), so a run is reproducible and can resume at any epoch."""
  return np.random.default_rng([seed, epoch]).permutation(num_examples)


def length_grouped_order(lengths: np.ndarray, batch_size: int, seed: int, epoch: int) -> np.ndarray:
  """`epoch_order`, then each run of GROUP_BATCHES * batch_size examples
  sorted by length, longest first, so consecutive batches hold pairs of
  similar length. `lengths` [n] is the number of real tokens per pair."""
  order = epoch_order(len(lengths), seed, epoch)
  group = GROUP_BATCHES * batch_size
  return np.concatenate([
      chunk[np.argsort(-lengths[chunk], kind="stable")]
      for chunk in np.split(order, range(group, len(order), group))
  ])


def widened(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """`batch` with its integer arrays as int32, the type the compiled steps
  take (encoded splits hold uint16 ids and uint8 segments and masks)."""
  return {name: array.astype(np.int32) if array.dtype.kind in "ui" and array.dtype != np.int32
          else array for name, array in batch.items()}


def batches(
    features: dict[str, np.ndarray],
    batch_size: int,
    order: np.ndarray | None = None,
    pad_multiple: int | None = None,
    rows_multiple: int = 1,
    lengths: np.ndarray | None = None,
) -> Iterator[dict[str, np.ndarray]]:
  """Yields dicts of [rows, ...] arrays plus `weights` [rows] float32, where
  rows = `batch_size` rounded up to a multiple of `rows_multiple`; token
  arrays are widened to int32 (`widened`).

  Args:
    features: arrays with the same first dimension n; [n, seq] token arrays
      include `attention_mask` (1 on real tokens, which come first).
    batch_size: examples per batch.
    order: the row order (a permutation of range(n)); file order when None.
    pad_multiple: cut [n, seq] arrays to the batch's longest pair rounded up
      to this multiple; None keeps the full seq.
    rows_multiple: pad every batch with zero-weight rows to a multiple of
      this (so it splits evenly over that many devices).
    lengths: [n] real tokens per pair, for `pad_multiple`; None: from the mask.
  """
  n = len(next(iter(features.values())))
  order = np.arange(n) if order is None else order
  if pad_multiple and lengths is None:
    lengths = features["attention_mask"].sum(axis=1)
  num_rows = round_up(batch_size, rows_multiple)
  for start in range(0, n, batch_size):
    rows = order[start:start + batch_size]
    weights = np.zeros(num_rows, np.float32)
    weights[:len(rows)] = 1.0
    rows = np.concatenate([rows, np.full(num_rows - len(rows), rows[0])])
    batch = widened({name: array[rows] for name, array in features.items()})
    if pad_multiple:
      seq = round_up(int(lengths[rows].max()), pad_multiple)
      batch = {name: array[:, :seq] if array.ndim == 2 else array
               for name, array in batch.items()}
    batch["weights"] = weights
    yield batch
