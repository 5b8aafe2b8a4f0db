"""Fixed-size batches of token arrays, padded so that no example is dropped.

Every batch has exactly `batch_size` rows, so a jitted step compiles once; the
last short batch is filled with copies of row 0 whose `weights` entry is 0, and
losses and metrics weight each row by `weights` (1 real, 0 padding).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np


def num_batches(num_examples: int, batch_size: int) -> int:
  return -(-num_examples // batch_size)


def epoch_order(num_examples: int, seed: int, epoch: int) -> np.ndarray:
  """The shuffled example order of one training epoch: a pure function of
  (seed, epoch), so a run is reproducible and can resume at any epoch."""
  return np.random.default_rng([seed, epoch]).permutation(num_examples)


def batches(
    features: dict[str, np.ndarray], batch_size: int, order: np.ndarray | None = None
) -> Iterator[dict[str, np.ndarray]]:
  """Yields dicts of [batch_size, ...] arrays plus `weights` [batch_size] float32.

  Args:
    features: arrays with the same first dimension n.
    batch_size: rows per batch.
    order: the row order (a permutation of range(n)); file order when None.
  """
  n = len(next(iter(features.values())))
  order = np.arange(n) if order is None else order
  for start in range(0, n, batch_size):
    rows = order[start:start + batch_size]
    weights = np.ones(batch_size, np.float32)
    if len(rows) < batch_size:
      weights[len(rows):] = 0.0
      rows = np.concatenate([rows, np.full(batch_size - len(rows), order[0])])
    batch = {name: array[rows] for name, array in features.items()}
    batch["weights"] = weights
    yield batch
